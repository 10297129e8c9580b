"""From scores and pruning ratios to masks, and per-layer density allocations.

``MaskBuilder`` ranks every layer's scores once; after that a mask for any ratio is a
comparison against the cached ranks, never a new sort. A global threshold (to a sparsity,
or to a budget) needs no sort at all: ``lowest_kept`` finds it with a one-byte histogram
of the scores. This is what makes environment steps cheap. ``uniform_densities`` and
``erk_densities`` allocate a global sparsity across layers; ``owl_sparsities`` is OWL's
allocation across blocks from their ``outlier_density``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from prune_gym.checks import check_fraction
from prune_gym.pruning.layers import ChannelStructure, prunable_layers, weight_shapes
from prune_gym.pruning.masks import MaskSet, check_structure, effective_weight
from prune_gym.pruning.scores import compute_scores, group_ranks

#: units per slice when a long flat tensor is processed piecewise (2 MiB of float64: the
#: slice and its temporaries stay in cache instead of streaming through memory, and each
#: operation is long enough to be worth splitting between threads).
CACHE_CHUNK = 1 << 18
#: histogram buckets of ``lowest_kept`` for finite scores (and +inf); with one for -inf
#: and one for NaN, a bucket number fits in one byte.
FINITE_BUCKETS = 254
#: scores sampled to bound the histogram's buckets.
RANGE_SAMPLE = 1 << 16


class MaskBuilder:
    """Builds masks for many ratios from one set of scores, ranking each layer only once.

    ``scores`` maps every prunable layer to a weight-shaped tensor (or, with
    ``structure="channel"``, a weight-shaped or ``(out_channels,)`` tensor; channel scores
    are summed per output channel); ``None`` means weight magnitude. Weights (channels)
    that the model already prunes rank below everything else, so masks stay nested when
    ratios only grow. Channel masks need ``example_input`` (or a prebuilt
    ``channel_structure``) to find coupled BatchNorms and the output layer.
    """

    def __init__(
        self,
        model: nn.Module,
        scores: dict[str, torch.Tensor] | None = None,
        structure: str = "unstructured",
        example_input: torch.Tensor | None = None,
        channel_structure: ChannelStructure | None = None,
    ) -> None:
        self.structure = check_structure(structure)
        layers = prunable_layers(model)
        self.layer_names = [name for name, _ in layers]
        self._shapes = weight_shapes(model)
        self._has_bias = {name: m.bias is not None for name, m in layers}
        if self.structure == "channel":
            if channel_structure is None:
                if example_input is None:
                    raise ValueError(
                        'structure="channel" needs example_input (a batch of model inputs) '
                        "to trace channel dependencies; got example_input=None"
                    )
                channel_structure = ChannelStructure.build(model, example_input)
            channel_structure.check_supported()
            self.channel_structure = channel_structure
        unit_scores = self._unit_scores(model, layers, scores)
        self._unit_counts = {name: unit.numel() for name, unit in unit_scores.items()}
        self._splits = [self._unit_counts[name] for name in self.layer_names]
        self._build_global_order(unit_scores)
        self._layer_ranks: dict[str, torch.Tensor] | None = None  # built on first from_ratios

    # ranking, done once ---------------------------------------------------------------
    def _unit_scores(
        self,
        model: nn.Module,
        layers: list[tuple[str, nn.Module]],
        scores: dict[str, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        """One float64 score per prunable unit, pruned units at -inf.

        Unstructured: the weight's score. Channel: the mean score per weight of the
        channel's dependency group (``ChannelStructure.importance``), so coupled layers
        rank their channels alike.
        """
        if scores is None:
            scores = compute_scores(model, "magnitude", None)
        missing = [name for name in self.layer_names if name not in scores]
        if missing:
            raise ValueError(
                f"scores have no entry for prunable layers {missing}; expected one tensor "
                f"per layer of {self.layer_names}"
            )
        scores = {name: scores[name].detach().cpu() for name in self.layer_names}
        for name, score in scores.items():
            _check_score_shape(name, score, self._shapes[name], self.structure)
        if self.structure == "channel":
            scores = self.channel_structure.importance(scores, self._shapes)
        units = {}
        for name, module in layers:
            kept = effective_weight(module).ne(0).cpu()
            if self.structure == "unstructured":
                unit, unit_kept = scores[name].reshape(-1), kept.reshape(-1)
            else:
                unit, unit_kept = scores[name], kept.reshape(kept.shape[0], -1).any(dim=1)
            units[name] = unit.to(torch.float64).masked_fill(~unit_kept, -math.inf)
        return units

    def _build_global_order(self, unit_scores: dict[str, torch.Tensor]) -> None:
        """Line all units of all layers up for one global ranking.

        Unstructured, the scores are kept (8 bytes per weight) and ranked only when a mask
        by ratios needs ranks (``_ranked``): a global threshold or budget never does
        (``least_removal``), so a builder made for one such mask never sorts. Channels are
        ranked now: kept are the rank and the cumulative weight count in removal order (per
        channel, so negligible).
        """
        sizes, scores = [], []
        for name, unit in unit_scores.items():
            per_unit = math.prod(self._shapes[name][1:]) if self.structure == "channel" else 1
            if self.structure == "channel" and name in self.channel_structure.output_layers:
                unit = torch.full_like(unit, math.inf)
            sizes.append(per_unit)
            scores.append(unit)
        all_scores = torch.cat(scores)
        self._removable_units = int(torch.count_nonzero(all_scores < math.inf))
        self._total_weights = sum(s * unit.numel() for s, unit in zip(sizes, scores, strict=True))
        self._scores: torch.Tensor | None = all_scores
        self._global_rank: torch.Tensor | None = None
        self._cumulative_size = None
        if self.structure == "channel":
            order = stable_order(all_scores)
            self._global_rank, self._scores = _ranks_of(order), None
            weights_per_unit = torch.cat(
                [
                    torch.full((unit.numel(),), size, dtype=torch.int64)
                    for size, unit in zip(sizes, scores, strict=True)
                ]
            )
            self._cumulative_size = torch.cumsum(weights_per_unit[order], dim=0)

    def _ranked(self) -> torch.Tensor:
        """Each unit's int32 rank over all layers: one sort on first need, then scores go."""
        if self._global_rank is None:
            self._global_rank, self._scores = _ranks_of(stable_order(self._scores)), None
        return self._global_rank

    def _ranks_in_layer(self) -> dict[str, torch.Tensor]:
        """Per layer, each unit's int32 rank among the layer's units (built once, lazily).

        A layer's units keep their relative order from the global ranking (stable ties
        preserve it), so its ranks are an argsort of that slice.
        Output layers of a channel structure are all ranked +inf globally; they are never
        pruned by ratio, so their order does not matter.
        """
        if self._layer_ranks is None:
            slices = self._ranked().split(self._splits)
            self._layer_ranks = {
                name: _ranks_of(torch.argsort(part))
                for name, part in zip(self.layer_names, slices, strict=True)
            }
        return self._layer_ranks

    def nbytes(self) -> int:
        """Bytes of tensors this builder keeps (scores or ranks, cumulative sizes)."""
        kept = [self._scores, self._global_rank, self._cumulative_size]
        kept += list((self._layer_ranks or {}).values())
        return sum(t.numel() * t.element_size() for t in kept if t is not None)

    def unit_count(self, name: str) -> int:
        """Number of prunable units (weights, or output channels) of layer ``name``."""
        return self._unit_counts[name]

    # masks, cheap ---------------------------------------------------------------------
    def from_ratios(self, ratios: dict[str, float]) -> MaskSet:
        """Remove ``round(ratio * units)`` lowest-ranked units of each named layer."""
        unknown = set(ratios) - set(self.layer_names)
        if unknown:
            raise ValueError(
                f"ratios name unknown layers {sorted(unknown)}; prunable layers are "
                f"{self.layer_names}"
            )
        keep, ranks = {}, self._ranks_in_layer()
        for name in self.layer_names:
            ratio = check_fraction(ratios.get(name, 0.0), f"ratio of layer {name!r}")
            if (
                ratio > 0
                and self.structure == "channel"
                and name in self.channel_structure.output_layers
            ):
                raise ValueError(
                    f"layer {name!r} produces the model's output; its channels cannot be "
                    f"removed (got ratio {ratio}); use ratio 0 for it"
                )
            removed = round(ratio * self._unit_counts[name])
            keep[name] = ranks[name] >= removed
        return self._mask_set(keep)

    def global_threshold(self, sparsity: float) -> MaskSet:
        """Remove the lowest-ranked units across all layers until ``sparsity`` is reached.

        Unstructured: exactly ``round(sparsity * N)`` weights (never one scored +inf).
        Channel: the fewest whole channels (ranked by mean score per weight) that remove at
        least that many weights, never a channel of an output layer (so ``sparsity=1``
        keeps exactly those).
        """
        sparsity = check_fraction(sparsity, "sparsity")
        target = round(sparsity * self._total_weights)
        if self.structure == "unstructured":
            return self.least_removal(lambda removed: sum(removed.values()) >= target)
        removed_units = int(torch.searchsorted(self._cumulative_size, target)) + 1 if target else 0
        removed_units = min(removed_units, self._removable_units)
        keep_all = self._global_rank >= removed_units
        return self._mask_set(
            dict(zip(self.layer_names, keep_all.split(self._splits), strict=True))
        )

    def least_removal(self, enough: Callable[[dict[str, int]], bool]) -> MaskSet:
        """Remove the fewest lowest-ranked weights, over all layers, for which ``enough`` holds.

        ``enough`` gets the number of weights removed per layer and must be monotone (true
        for every longer prefix of the global ranking once true), as a limit on params and
        MACs is. The masks are those a bisection over ``global_threshold`` sparsities would
        find, from one histogram pass (``lowest_kept``) instead of a mask per probe.
        Weights scored +inf are never removed: if no count is enough, all others are.
        Unstructured only (a channel's cost depends on the channels coupled to it).
        """
        if self.structure != "unstructured":
            raise ValueError(
                f"least_removal prunes single weights; this builder has structure="
                f"{self.structure!r} (use global_threshold)"
            )
        removable = self._removable_units

        def enough_or_all(removed: dict[str, int]) -> bool:
            return sum(removed.values()) >= removable or enough(removed)

        key = self._global_rank if self._scores is None else self._scores
        keep_all = lowest_kept(key, self._unit_counts, enough_or_all)
        return self._mask_set(
            dict(zip(self.layer_names, keep_all.split(self._splits), strict=True))
        )

    def _mask_set(self, keep_units: dict[str, torch.Tensor]) -> MaskSet:
        """Expand per-unit keep flags into a MaskSet of weight-shaped masks.

        Channel masks also carry bias and BatchNorm masks: a BatchNorm directly after a
        layer follows that layer's rows, and one anywhere in a group (after a concat, in
        a pre-activation block) loses the channels the group removes. Every layer and
        BatchNorm gets its extra masks, kept or not, so applying this set overwrites
        whatever an earlier channel mask left.
        """
        if self.structure == "unstructured":
            masks = {name: keep.view(self._shapes[name]) for name, keep in keep_units.items()}
            return MaskSet(masks)
        structure = self.channel_structure
        norm_keep = structure.norm_keep_masks(structure.removed_roots(keep_units))
        masks, extra = {}, {}
        for name, keep in keep_units.items():
            shape = self._shapes[name]
            masks[name] = keep.view(-1, *([1] * (len(shape) - 1))).expand(shape)
            if self._has_bias[name]:
                extra[f"{name}.bias"] = keep
            for bn in structure.batchnorms.get(name, []):
                norm_keep[bn] = norm_keep[bn] & keep if bn in norm_keep else keep
        for bn, keep in norm_keep.items():
            extra[f"{bn}.weight"] = keep
            extra[f"{bn}.bias"] = keep
        return MaskSet(masks, structure="channel", extra_masks=extra)


def _ranks_of(order: torch.Tensor) -> torch.Tensor:
    """Position of each entry, given the permutation ``order`` that sorts them.

    int32 (4 bytes per entry) unless there are more entries than int32 can count.
    """
    dtype = torch.int32 if order.numel() <= torch.iinfo(torch.int32).max else torch.int64
    return _placed(order, torch.arange(order.numel(), dtype=dtype))


def _placed(order: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values[i]`` put at position ``order[i]``: a permutation's inverse, carrying values.

    ``scatter_`` does it about twice as fast as index assignment on large tensors.
    """
    return torch.empty_like(values).scatter_(0, order, values)


def whole_weight_sparsity(sparsity: float, total: int) -> float:
    """The smallest sparsity of whole weights out of ``total`` that is at least ``sparsity``.

    ``round(s * total)`` weights may fall one short of a budget; this never does, so a
    method asked for it meets a ``params <= 1 - sparsity`` budget exactly.
    """
    sparsity = check_fraction(sparsity, "sparsity")
    return math.ceil(sparsity * total - 1e-9) / total


def percentile_ranks(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every score replaced by its percentile in [0, 1] among all layers' scores.

    A scale-free normalisation: metrics whose raw values differ by orders of magnitude
    (SynFlow vs SNIP) become comparable, so they can be mixed and summarised.
    """
    shapes = {name: score.shape for name, score in scores.items()}
    return per_layer(flat_percentile_ranks(scores), shapes)


def flat_percentile_ranks(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """``percentile_ranks`` as one float64 tensor, the layers flat and end to end in order.

    Ties are ranked by position, as a stable sort does.
    """
    flat = _concatenated([score.detach().cpu() for score in scores.values()])
    return stable_ranks(flat).to(torch.float64).div_(max(flat.numel() - 1, 1))


def stable_ranks(values: torch.Tensor) -> torch.Tensor:
    """Each entry's position in ``stable_order(values)`` (int64), sorting only the nonzeros.

    Zeros (0.0 and -0.0 tie) rank right after every negative value, among themselves by
    position, so they need no sort. Pruned weights score 0: re-scoring a sparse net sorts
    only its live weights.
    """
    zero = values == 0
    zeros = int(torch.count_nonzero(zero))
    if zeros == 0:
        return _placed(stable_order(values), torch.arange(values.numel()))
    live = (~zero).nonzero().squeeze(1)
    live_values = values[live]
    negatives = int(torch.count_nonzero(live_values < 0))  # -inf included; NaN is not
    live_ranks = torch.arange(live.numel())
    live_ranks[negatives:] += zeros
    ranks = torch.empty(values.numel(), dtype=torch.int64)
    ranks[live[stable_order(live_values)]] = live_ranks
    ranks[zero] = torch.arange(negatives, negatives + zeros)
    return ranks


def per_layer(flat: torch.Tensor, shapes: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Views of ``flat`` cut into consecutive pieces of the given shapes, in order."""
    parts = flat.split([math.prod(shape) for shape in shapes.values()])
    return {
        name: part.view(shape) for (name, shape), part in zip(shapes.items(), parts, strict=True)
    }


def _concatenated(parts: list[torch.Tensor]) -> torch.Tensor:
    """The parts flat and end to end: float32 if all are floats of at most 32 bits, else float64.

    Either way the values compare exactly as their float64 conversions do, and float32
    sorts faster (4-byte keys, see ``stable_order``).
    """
    narrow = all(part.is_floating_point() and part.element_size() <= 4 for part in parts)
    dtype = torch.float32 if narrow else torch.float64
    return torch.cat([part.reshape(-1).to(dtype) for part in parts])


def stable_order(values: torch.Tensor) -> torch.Tensor:
    """``torch.argsort(values, stable=True)`` of a flat tensor, 3-5x faster for floats.

    Floats are sorted as integer keys of the same order (``_sort_keys``), which PyTorch
    radix-sorts; ties stay in position order, -inf first and NaN last, as with floats.
    """
    return torch.argsort(_sort_keys(values), stable=True)


def _sort_keys(values: torch.Tensor) -> torch.Tensor:
    """Integers that order (and tie) exactly as the flat ``values`` do in a float sort.

    An IEEE float's bits, read as a signed integer, sort like the float when it is
    positive; for negative floats the magnitude bits are flipped. -0.0 becomes 0.0 and
    every NaN the one canonical NaN first, since a float sort ties them. Integers are
    their own keys; float64 gives int64 keys, narrower floats int32 keys.
    """
    if not values.is_floating_point():
        return values
    wide = values.dtype == torch.float64
    float_type, int_type = (torch.float64, torch.int64) if wide else (torch.float32, torch.int32)
    canonical = values.to(float_type, copy=True)
    canonical.masked_fill_(canonical == 0, 0.0)
    canonical.masked_fill_(canonical.isnan(), math.nan)
    bits = canonical.view(int_type)
    sign = bits.bitwise_right_shift(8 * bits.element_size() - 1)  # -1 if negative, else 0
    return bits.bitwise_xor_(sign.bitwise_and_(torch.iinfo(int_type).max))


def lowest_kept(
    scores: torch.Tensor, sizes: Mapping[str, int], enough: Callable[[dict[str, int]], bool]
) -> torch.Tensor:
    """Keep flags removing the fewest lowest units, in a stable sort's order, that are enough.

    ``scores`` is flat; its consecutive parts of ``sizes`` (name -> units, in order) are
    the layers. ``enough`` gets the units removed per layer; it must be monotone (once
    true, true for more units removed in this order) and true when all are removed.
    The order is that of ``stable_order`` (score, then position), found without sorting:
    a one-byte bucket per unit, monotone in that order (``_bucket_ids``), counts every
    layer's units below each bucket; a bisection over buckets finds the one in which
    ``enough`` turns true, and only that bucket's units are sorted and bisected.
    """
    buckets = _bucket_ids(scores)
    names = list(sizes)
    counts = torch.stack(
        [torch.bincount(part, minlength=256) for part in buckets.split(list(sizes.values()))]
    )
    below = torch.nn.functional.pad(counts.cumsum(dim=1), (1, 0))  # [:, b]: in buckets < b

    def enough_with(removed: torch.Tensor) -> bool:
        return enough(dict(zip(names, removed.tolist(), strict=True)))

    first = bisect.bisect_left(range(257), True, key=lambda b: enough_with(below[:, b]))
    if first == 0:
        return torch.ones(scores.numel(), dtype=torch.bool)
    bucket = first - 1  # enough turns true among this bucket's units
    members = (buckets == bucket).nonzero().squeeze(1)
    members = members[stable_order(scores[members])]
    ends = torch.tensor(list(sizes.values())).cumsum(dim=0)
    layer_of = torch.searchsorted(ends, members, right=True)
    base = below[:, bucket]
    taken = 1 + bisect.bisect_left(
        range(1, members.numel() + 1),
        True,
        key=lambda j: enough_with(base + torch.bincount(layer_of[:j], minlength=len(names))),
    )
    keep = buckets > bucket
    keep[members[taken:]] = True
    return keep


def _bucket_ids(scores: torch.Tensor) -> torch.Tensor:
    """One byte per score, monotone in a stable sort's order (ties share a bucket).

    0 for -inf, 1 to ``FINITE_BUCKETS`` for finite scores (linear in the score between
    the bounds of ``_sampled_range``, clamped), 255 for NaN (+inf shares the top finite
    bucket). Only monotonicity matters, so rounding in the arithmetic is harmless: every
    step (subtract, scale by a positive number, clamp) is monotone in IEEE arithmetic.
    """
    low, high = _sampled_range(scores)
    scale = (FINITE_BUCKETS - 1) / (high - low) if high > low else 1.0
    if not 0 < scale < math.inf:  # a span too small or too large to divide by
        scale = 1.0
    origin = low - 1 / scale  # ``low`` lands in bucket 1
    ids = torch.empty(scores.numel(), dtype=torch.uint8)
    work = torch.empty(min(CACHE_CHUNK, scores.numel()), dtype=torch.float64)
    for piece in cache_slices(scores.numel()):
        value = torch.sub(scores[piece], origin, out=work[: piece.stop - piece.start])
        value.mul_(scale).clamp_(0, FINITE_BUCKETS).nan_to_num_(nan=FINITE_BUCKETS + 1)
        ids[piece].copy_(value)
    return ids


def _sampled_range(scores: torch.Tensor) -> tuple[float, float]:
    """The smallest and largest finite score among ~``RANGE_SAMPLE`` evenly spaced ones.

    Bucket bounds need not be exact: a score beyond them shares the first or the last
    finite bucket (or -inf's), still in order. A strided sample costs a small fraction of a
    pass, and skips the infinities (pruned weights score -inf) without copying the rest.
    Returns (0, 0) if no sampled score is finite.
    """
    sample = scores[:: max(1, scores.numel() // RANGE_SAMPLE)]
    sample = sample[torch.isfinite(sample)]
    if sample.numel() == 0:
        return 0.0, 0.0
    low, high = torch.aminmax(sample)
    return float(low), float(high)


def cache_slices(numel: int) -> Iterator[slice]:
    """Consecutive slices of ``CACHE_CHUNK`` units covering ``range(numel)``."""
    for start in range(0, numel, CACHE_CHUNK):
        yield slice(start, min(start + CACHE_CHUNK, numel))


def _check_score_shape(name: str, score: torch.Tensor, shape: torch.Size, structure: str) -> None:
    """Scores are weight-shaped; for channel masks they may also be ``(out_channels,)``."""
    if score.shape == shape or (structure == "channel" and score.shape == (shape[0],)):
        return
    accepted = f"the weight's shape {tuple(shape)}"
    if structure == "channel":
        accepted += f" or ({shape[0]},) for channel scores"
    raise ValueError(f"scores[{name!r}] has shape {tuple(score.shape)}; expected {accepted}")


def uniform_densities(model: nn.Module, sparsity: float) -> dict[str, float]:
    """Every prunable layer keeps the same fraction ``1 - sparsity`` of its weights."""
    sparsity = check_fraction(sparsity, "sparsity")
    return {name: 1.0 - sparsity for name, _ in prunable_layers(model)}


def erk_densities(model: nn.Module, sparsity: float, power_scale: float = 1.0) -> dict[str, float]:
    """Erdos-Renyi-Kernel densities (RigL): density ~ sum(shape) / prod(shape).

    Layers whose density would exceed 1 are made dense and the scale re-solved, so the
    total number of kept weights is exactly ``(1 - sparsity) * N``.
    """
    sparsity = check_fraction(sparsity, "sparsity")
    shapes = weight_shapes(model)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: (sum(shape) / math.prod(shape)) ** power_scale for name, shape in shapes.items()}
    kept_total = (1.0 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    while True:
        budget = kept_total - sum(sizes[name] for name in dense)
        scale_sum = sum(raw[name] * sizes[name] for name in shapes if name not in dense)
        epsilon = budget / scale_sum if scale_sum > 0 else 0.0
        too_dense = {name for name in shapes if name not in dense and epsilon * raw[name] > 1.0}
        if not too_dense:
            break
        dense |= too_dense
    return {name: 1.0 if name in dense else epsilon * raw[name] for name in shapes}


def outlier_density(scores: Sequence[torch.Tensor], factor: float) -> float:
    """OWL's layerwise outlier distribution (Yin et al., 2024): the percentage of the scores
    (of all of a block's layers together) above ``factor`` times their mean."""
    flat = torch.cat([score.reshape(-1).to(torch.float64) for score in scores])
    return 100.0 * float((flat > factor * flat.mean()).double().mean())


def owl_sparsities(densities: Sequence[float], target: float, lam: float) -> np.ndarray:
    """OWL's per-block sparsities from their outlier densities, around the ``target``.

    The densities are min-max scaled to ``[0, 2 * lam]``, centred on ``1 - target`` and
    read as kept fractions, so blocks with more outliers are pruned less, the spread is
    ``2 * lam`` and the mean is ``target``; a sparsity at or below 0 becomes 0.01, as in
    the authors' code. Equal densities give ``target`` everywhere.
    """
    lod = np.asarray(densities, dtype=np.float64)
    spread = lod.max() - lod.min()
    kept = 2 * lam * (lod - lod.min()) / spread if spread > 0 else np.zeros_like(lod)
    kept = kept - kept.mean() + (1.0 - target)
    sparsities = 1.0 - kept
    return np.where(sparsities <= 0, 0.01, sparsities)


def semi_structured_masks(
    model: nn.Module, n: int = 2, m: int = 4, scores: dict[str, torch.Tensor] | None = None
) -> MaskSet:
    """N:M masks: in every group of ``m`` consecutive inputs of an output row, the ``n``
    highest-scoring weights are kept (2:4 is what sparse tensor cores run).

    Scores default to weight magnitude; each layer's inputs per row (``in_features``, or
    ``in_channels / groups * kernel`` for a convolution) must be a multiple of ``m``.
    Among equal scores the later weight is kept (``group_ranks``). Every layer ends at
    sparsity ``1 - n / m``.
    """
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
        raise ValueError(f"n={n!r} and m={m!r} must be integers with 0 < n < m")
    scores = compute_scores(model, "magnitude", None) if scores is None else scores
    layers = prunable_layers(model)
    for name, module in layers:
        per_row = effective_weight(module)[0].numel()
        if per_row % m:
            raise ValueError(
                f"layer {name!r} has {per_row} inputs per output row, not a multiple of "
                f"m={m}; {n}:{m} masks need whole groups"
            )
    names = [name for name, _ in layers]
    ranks = group_ranks({name: scores[name].detach() for name in names}, m)
    return MaskSet({name: ranks[name] > m - n for name in names})
