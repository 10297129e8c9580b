"""From scores and pruning ratios to masks, and per-layer density allocations.

``MaskBuilder`` ranks every layer's scores once; after that a mask for any ratio (or any
global sparsity) is a comparison against the cached ranks, never a new sort. This is what
makes environment steps cheap. ``uniform_densities`` and ``erk_densities`` allocate a
global sparsity across layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prune_gym.checks import check_fraction
from prune_gym.pruning.layers import ChannelStructure, prunable_layers
from prune_gym.pruning.masks import MaskSet, check_structure, effective_weight
from prune_gym.pruning.scores import compute_scores


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
        self._shapes = {name: m.weight.shape for name, m in layers}
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
        """Rank all units of all layers together, once: the one sort a builder does.

        Kept: one int32 rank per unit (4 bytes per weight, unstructured) and, for channels,
        the cumulative weight count in removal order (per channel, so negligible).
        """
        sizes, scores = [], []
        for name, unit in unit_scores.items():
            per_unit = math.prod(self._shapes[name][1:]) if self.structure == "channel" else 1
            if self.structure == "channel" and name in self.channel_structure.output_layers:
                unit = torch.full_like(unit, math.inf)
            sizes.append(torch.full((unit.numel(),), per_unit, dtype=torch.int64))
            scores.append(unit)
        all_scores = torch.cat(scores)
        order = torch.argsort(all_scores, stable=True)
        self._removable_units = int((all_scores < math.inf).sum())
        self._global_rank = _ranks_of(order)
        self._cumulative_size = None
        if self.structure == "channel":
            self._cumulative_size = torch.cumsum(torch.cat(sizes)[order], dim=0)
        self._total_weights = int(sum(size.sum() for size in sizes))

    def _ranks_in_layer(self) -> dict[str, torch.Tensor]:
        """Per layer, each unit's int32 rank among the layer's units (built once, lazily).

        A layer's units keep their relative order from the global ranking (stable ties
        preserve it), so its ranks are an argsort of that slice.
        Output layers of a channel structure are all ranked +inf globally; they are never
        pruned by ratio, so their order does not matter.
        """
        if self._layer_ranks is None:
            slices = self._global_rank.split(self._splits)
            self._layer_ranks = {
                name: _ranks_of(torch.argsort(part))
                for name, part in zip(self.layer_names, slices, strict=True)
            }
        return self._layer_ranks

    def nbytes(self) -> int:
        """Bytes of tensors this builder keeps (ranks and cumulative sizes), for budgets."""
        kept = [self._global_rank, *(self._layer_ranks or {}).values()]
        if self._cumulative_size is not None:
            kept.append(self._cumulative_size)
        return sum(tensor.numel() * tensor.element_size() for tensor in kept)

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

        Unstructured: exactly ``round(sparsity * N)`` weights. Channel: the fewest whole
        channels (ranked by mean score per weight) that remove at least that many weights,
        never a channel of an output layer (so ``sparsity=1`` keeps exactly those).
        """
        sparsity = check_fraction(sparsity, "sparsity")
        target = round(sparsity * self._total_weights)
        removed_units = target  # one weight per unit
        if target > 0 and self._cumulative_size is not None:
            removed_units = int(torch.searchsorted(self._cumulative_size, target)) + 1
        removed_units = min(removed_units, self._removable_units)
        keep_all = self._global_rank >= removed_units
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
    ranks = torch.empty(order.numel(), dtype=dtype)
    ranks[order] = torch.arange(order.numel(), dtype=dtype)
    return ranks


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
    names = list(scores)
    flat = torch.cat([scores[name].reshape(-1).to(torch.float64) for name in names])
    ranks = _ranks_of(torch.argsort(flat, stable=True))
    percentiles = ranks.to(torch.float64) / max(flat.numel() - 1, 1)
    parts = percentiles.split([scores[name].numel() for name in names])
    return {name: part.view(scores[name].shape) for name, part in zip(names, parts, strict=True)}


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
    shapes = {name: m.weight.shape for name, m in prunable_layers(model)}
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
