"""What a (pruned) network costs: parameters, MACs (dense, nonzero, structural), latency.

Units (docs/design.md, Units): MACs are multiply-accumulates of one forward pass of one sample, over
the prunable Linear/Conv1d/Conv2d layers (bias, normalisation and activations are not
counted, as in ``torch.utils.flop_counter``). ``params_*`` count prunable weights.
``*_nonzero`` scales each layer by its weight density; ``*_structural`` counts what is left
once channels that every coupled producer zeroes are physically removed (see
``export_channel_pruned``). A model with any other parameterised module (an LSTM, an
embedding, a bare ``nn.Parameter``) is refused unless its parameters are named in
``uncounted``, so costs never silently cover a fraction of the network.
"""

from __future__ import annotations

import fnmatch
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prune_gym.checks import check_number, did_you_mean, is_real
from prune_gym.pruning.layers import (
    CONV_TYPES,
    PRUNABLE_TYPES,
    ChannelStructure,
    bypassed_layers,
    eval_mode,
    hooked_forward,
    layer_kind,
    prunable_layers,
)
from prune_gym.pruning.masks import MaskSet

RESOURCES = ("params", "flops", "latency")
#: parameters of a prunable layer (``_orig`` once masked): its weight is costed, its bias not.
LAYER_PARAMETERS = ("weight", "bias", "weight_orig", "bias_orig")
#: modules whose parameters are per-channel affine terms, left out of costs by design.
NORMALIZATION_TYPES = tuple(
    getattr(nn, name)
    for name in (
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "SyncBatchNorm",
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
        "LayerNorm",
        "GroupNorm",
        "RMSNorm",
    )
    if hasattr(nn, name)
)
#: used fractions within this of a limit meet it (round-off of fractions, far below 1 weight).
TOLERANCE = 1e-12


@dataclass(frozen=True)
class LayerCost:
    """Dense cost of one prunable layer for one input sample."""

    name: str
    kind: str
    params: int
    macs: int
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    output_size: tuple[int, ...]
    #: times the layer runs in one forward pass; ``macs`` covers every call.
    calls: int = 1

    def description(self) -> str:
        """A short label for reports: ``conv 16→32 3x3``, ``linear 512→64``."""
        text = f"{self.kind} {self.in_channels}→{self.out_channels}"
        if self.kind == "linear":
            return text
        return f"{text} {'x'.join(map(str, self.kernel_size))}"


class CostModel:
    """Per-layer dense costs of one architecture, measured once with one forward pass.

    ``costs(masks)`` then costs any ``MaskSet`` with tensor arithmetic only, so an
    environment can price every step without running the model. ``uncounted`` names the
    parameters outside prunable layers that the costs may leave out (see
    ``check_costed``); any other such parameter is a ``ValueError``.
    """

    def __init__(
        self, model: nn.Module, example_input: torch.Tensor, *, uncounted: Sequence[str] = ()
    ) -> None:
        check_costed(model, uncounted)
        layers = prunable_layers(model, example_input)
        self.layers = _measure_layers(model, layers, example_input)
        self.channel_structure = ChannelStructure.build(model, example_input)
        self.params_dense = sum(layer.params for layer in self.layers)
        self.macs_dense = sum(layer.macs for layer in self.layers)

    @property
    def layer_names(self) -> list[str]:
        """Prunable layer names in forward order."""
        return [layer.name for layer in self.layers]

    def costs(self, masks: MaskSet | None = None) -> dict:
        """Totals and per-layer rows of params and MACs under ``masks`` (dense if None)."""
        if masks is not None:
            missing = set(masks.masks) - set(self.layer_names)
            if missing:
                raise ValueError(f"masks name layers {sorted(missing)} that the model lacks")
        out_kept, in_kept = self._kept_channels(masks)
        rows = []
        for layer in self.layers:
            density = 1.0
            if masks is not None and layer.name in masks.masks:
                density = float(masks.masks[layer.name].sum()) / layer.params
            structural = (out_kept[layer.name] / layer.out_channels) * in_kept[layer.name]
            rows.append(
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "params_dense": layer.params,
                    "params_nonzero": round(layer.params * density),
                    "params_structural": round(layer.params * structural),
                    "macs_dense": layer.macs,
                    "macs_nonzero": layer.macs * density,
                    "macs_structural": round(layer.macs * structural),
                    "density": density,
                    "out_channels_kept": out_kept[layer.name],
                }
            )
        totals = {
            key: sum(row[key] for row in rows)
            for key in (
                "params_dense",
                "params_nonzero",
                "params_structural",
                "macs_dense",
                "macs_nonzero",
                "macs_structural",
            )
        }
        totals["layers"] = rows
        return totals

    def used_fractions(self, masks: MaskSet, structural: bool = False) -> dict[str, float]:
        """Kept fractions of the dense ``params`` and MACs (``flops``), nonzero or structural.

        The same numbers as ``costs``' totals; the nonzero ones skip the per-layer rows
        and the channel groups, since budget searches ask for them many times a step.
        """
        if structural:
            costs = self.costs(masks)
            return {
                "params": costs["params_structural"] / self.params_dense,
                "flops": costs["macs_structural"] / self.macs_dense,
            }
        return self.fractions_removing(
            {name: mask.numel() - int(mask.sum()) for name, mask in masks.masks.items()}
        )

    def fractions_removing(self, removed: Mapping[str, int]) -> dict[str, float]:
        """Nonzero ``used_fractions`` of removing ``removed[name]`` weights per layer.

        Priced from the counts alone (a layer's MACs shrink with its kept weights), so a
        budget search can ask many times without building a mask.
        """
        kept_params = kept_macs = 0.0
        for layer in self.layers:
            kept = layer.params - removed.get(layer.name, 0)
            kept_params += kept
            kept_macs += layer.macs * (kept / layer.params)
        return {"params": kept_params / self.params_dense, "flops": kept_macs / self.macs_dense}

    def _kept_channels(self, masks: MaskSet | None) -> tuple[dict[str, int], dict[str, float]]:
        """Output channels left per layer, and the fraction of input width left per layer.

        A root channel of a group is removable when every producer in the group has an
        all-zero row for it; consumers then lose the matching input indices.
        """
        out_kept = {layer.name: layer.out_channels for layer in self.layers}
        in_fraction = {layer.name: 1.0 for layer in self.layers}
        if masks is None:
            return out_kept, in_fraction
        in_removed: dict[str, torch.Tensor] = {}
        for removed, producers, consumers in zip(
            self.channel_structure.removed_channels(masks),
            self.channel_structure.producers,
            self.channel_structure.consumers,
            strict=True,
        ):
            for name, roots in producers.items():
                out_kept[name] -= int(removed[roots].sum())
            for name, roots in consumers.items():
                hit = (roots >= 0) & removed[roots.clamp(min=0)]
                in_removed[name] = in_removed.get(name, torch.zeros_like(hit)) | hit
        for name, removed_inputs in in_removed.items():
            in_fraction[name] = 1.0 - float(removed_inputs.float().mean())
        return out_kept, in_fraction


def _measure_layers(
    model: nn.Module, layers: list[tuple[str, nn.Module]], example_input: torch.Tensor
) -> list[LayerCost]:
    """Run one forward pass and compute each layer's dense MACs from its output shapes.

    Every call of a layer counts, as in ``torch.utils.flop_counter``: a layer applied twice
    in ``forward`` costs twice its MACs. A layer whose number of calls depends on the input
    (a loop bounded by the data) has no fixed cost: one that runs a different number of
    times on a random input or its negation is refused.
    """
    output_shapes = _output_shapes(model, layers, example_input)
    if example_input.is_floating_point():
        generator = torch.Generator(device="cpu").manual_seed(0)
        probe = torch.randn(example_input.shape, generator=generator, dtype=example_input.dtype)
        probe = probe.to(example_input.device)
        for probe_shapes in (_output_shapes(model, layers, x) for x in (probe, -probe)):
            for name, _ in layers:
                calls = len(output_shapes.get(name, []))
                probe_calls = len(probe_shapes.get(name, []))
                if calls != probe_calls:
                    raise ValueError(
                        f"prunable layer {name!r} ran {calls} time(s) on the example input "
                        f"and {probe_calls} on a random one: its cost depends on the data, so "
                        "no budget on it can be checked. prune-gym costs models whose layers "
                        "run a fixed number of times per forward pass"
                    )
    batch = example_input.shape[0]
    costs = []
    for name, module in layers:
        if name not in output_shapes:
            raise ValueError(
                f"prunable layer {name!r} was not used in the forward pass of the example "
                "input; prune-gym cannot cost or prune a layer the model does not run"
            )
        shapes = output_shapes[name]
        params = module.weight.numel()
        if isinstance(module, CONV_TYPES):
            positions = sum(math.prod(shape[2:]) for shape in shapes)
            kernel, stride = tuple(module.kernel_size), tuple(module.stride)
            in_channels = module.in_channels
        else:  # tokens per sample, 1 for plain MLPs
            positions = sum(math.prod(shape[:-1]) // batch for shape in shapes)
            kernel, stride = (1,), (1,)
            in_channels = module.in_features
        costs.append(
            LayerCost(
                name=name,
                kind=layer_kind(module),
                params=params,
                macs=params * positions,
                in_channels=in_channels,
                out_channels=module.weight.shape[0],
                kernel_size=kernel,
                stride=stride,
                output_size=tuple(shapes[0][1:]),
                calls=len(shapes),
            )
        )
    return costs


def _output_shapes(
    model: nn.Module, layers: list[tuple[str, nn.Module]], inputs: torch.Tensor
) -> dict[str, list[torch.Size]]:
    """Layer name -> the output shape of each of its calls in one eval-mode forward pass."""
    output_shapes: dict[str, list[torch.Size]] = {}

    def record(name: str, _module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        output_shapes.setdefault(name, []).append(output.shape)

    with eval_mode(model):
        hooked_forward(model, inputs, layers, after=record)
    return output_shapes


def count_costs(
    model: nn.Module,
    example_input: torch.Tensor,
    masks: MaskSet | None = None,
    *,
    uncounted: Sequence[str] = (),
) -> dict:
    """Params and MACs of ``model`` (dense, nonzero under ``masks``, structural) + per-layer rows.

    Keys: ``params_dense``, ``params_nonzero``, ``params_structural``, ``macs_dense``,
    ``macs_nonzero``, ``macs_structural`` and ``layers`` (one dict per prunable layer).
    Masks default to those the model carries (``weight_mask`` buffers), if any.
    ``uncounted``: see ``check_costed``.
    """
    if masks is None:
        masks = MaskSet.from_model(model)
    return CostModel(model, example_input, uncounted=uncounted).costs(masks)


def check_costed(model: nn.Module, uncounted: Sequence[str] = ()) -> None:
    """Raise ``ValueError`` naming every parameter the costs would leave out unasked.

    Costs cover the weights of prunable layers; their biases and normalisation layers are
    left out by design. Any other parameter (an LSTM, an embedding, a bare
    ``nn.Parameter``) must match one of the ``uncounted`` shell-style patterns, tried on
    its owning module's name and on its own dotted name (``"lstm"``, ``"*.pos_embedding"``).
    A pattern that matches no such parameter is an error too (a typo would hide nothing).
    """
    if isinstance(uncounted, str):
        raise TypeError(f"uncounted must be a list of names or patterns, not {uncounted!r}")
    left_out: dict[str, tuple[str, int]] = {}  # module name -> (type, parameter count)
    matched: set[str] = set()
    bypassed = bypassed_layers(model)
    for module_name, module in model.named_modules():
        if isinstance(module, NORMALIZATION_TYPES):
            continue
        prunable = isinstance(module, PRUNABLE_TYPES) and id(module) not in bypassed
        for param_name, param in module.named_parameters(recurse=False):
            if prunable and param_name in LAYER_PARAMETERS:
                continue
            path = f"{module_name}.{param_name}" if module_name else param_name
            hits = [p for p in uncounted if fnmatch.fnmatchcase(module_name, p)]
            hits += [p for p in uncounted if fnmatch.fnmatchcase(path, p)]
            if hits:
                matched.update(hits)
                continue
            kind, count = left_out.get(module_name or path, (type(module).__name__, 0))
            left_out[module_name or path] = (kind, count + param.numel())
    unused = [pattern for pattern in uncounted if pattern not in matched]
    if unused:
        raise ValueError(
            f"uncounted={list(uncounted)!r}: {unused} match no parameter outside the prunable "
            f"layers of {type(model).__name__}"
        )
    if left_out:
        listed = ", ".join(
            f"{name!r} ({kind}, {count:,} parameter{'s' * (count != 1)})"
            for name, (kind, count) in left_out.items()
        )
        raise ValueError(
            f"{type(model).__name__} has parameters that params/MACs would leave out: {listed}. "
            "prune-gym prunes and counts nn.Linear, nn.Conv1d and nn.Conv2d weights (biases "
            "and normalisation layers are not counted). To leave these out of the costs "
            f"knowingly, pass uncounted={list(left_out)!r} (for a task: Task(..., "
            "uncounted=...))."
        )


def measure_latency(
    model: nn.Module, example_input: torch.Tensor, repeats: int = 20, warmup: int = 3
) -> float:
    """Median wall time in seconds of one forward pass (``warmup`` passes excluded)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0; got repeats={repeats}, {warmup=}")
    times = []
    with eval_mode(model), torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(example_input)
            if example_input.is_cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class Budget:
    """Resource limits as fractions of the dense network: ``{"flops": 0.5}`` = half the MACs.

    Keys: ``params`` (nonzero prunable weights), ``flops`` (nonzero MACs) and ``latency``
    (measured; structured pruning only). Every limit lies in (0, 1].
    """

    limits: dict[str, float]

    def __post_init__(self) -> None:
        limits = self.limits.limits if isinstance(self.limits, Budget) else self.limits
        if not isinstance(limits, Mapping):
            hint = (
                " (Budget.parse reads the CLI form 'flops=0.5')" if isinstance(limits, str) else ""
            )
            raise TypeError(
                f"budget={limits!r} must be a dict resource -> fraction such as "
                f"{{'flops': 0.5}}, with resources from {RESOURCES}{hint}"
            )
        if not limits:
            raise ValueError(f"budget={limits!r} is empty; give at least one of {RESOURCES}")
        for resource in limits:
            if resource not in RESOURCES:
                raise ValueError(
                    f"unknown budget resource {resource!r}; expected one of {RESOURCES}"
                    + did_you_mean(resource, RESOURCES)
                )
        checked = {
            resource: check_number(limit, f"budget {resource}", 0.0, 1.0, low_open=True)
            for resource, limit in limits.items()
        }
        object.__setattr__(self, "limits", checked)  # plain floats, a copy of the caller's

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Parse a budget's text, the one form every verb and record uses: ``"flops=0.5"``,
        or resources joined by ``+``: ``"flops=0.5+params=0.3"`` (``label`` writes it)."""
        if "," in text:
            raise ValueError(
                f"budget {text!r}: join one budget's resources with '+' "
                "(e.g. flops=0.5+params=0.3); a comma separates budgets in bench --budgets"
            )
        limits = {}
        for part in (p.strip() for p in text.split("+")):
            resource, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"budget item {part!r} is not of the form resource=fraction")
            limits[resource.strip()] = _number(part, value)
        return cls(limits)

    @property
    def label(self) -> str:
        """The budget's text (``parse`` reads it back), as records and file names show it."""
        return "+".join(f"{r}={v:g}" for r, v in sorted(self.limits.items()))

    def violation(self, used: dict[str, float]) -> float:
        """Largest excess of a used fraction over its limit, floored at 0.

        Excesses below ``TOLERANCE`` are float round-off (1 - 0.9 is not 0.1), not a
        weight too many, and count as 0.
        """
        excess = max(0.0, *(used[r] - limit for r, limit in self.limits.items()))
        return excess if excess > TOLERANCE else 0.0

    def is_met(self, used: dict[str, float]) -> bool:
        """Whether every used fraction is within its limit."""
        return self.violation(used) <= 0.0


@dataclass(frozen=True)
class BudgetRange:
    """A range of limits per resource: a budget-conditioned env draws one budget per episode.

    ``bounds``: resource -> ``(low, high)`` with ``0 < low <= high <= 1``; a plain number
    is a fixed limit. Each resource is drawn log-uniformly (``sample``): a budget's
    difficulty goes with the factor by which it shrinks the network, so every factor in the
    range gets the same share of episodes (uniformly, 0.02-0.04 would get a ninth of
    (0.02, 0.2); log-uniformly it gets a third, as much as 0.1-0.2).
    """

    bounds: dict[str, tuple[float, float]]

    def __post_init__(self) -> None:
        if not isinstance(self.bounds, Mapping):
            raise TypeError(
                f"budget range {self.bounds!r} must be a dict resource -> (low, high) such "
                "as {'params': (0.02, 0.2)}"
            )
        pairs = {
            resource: (bound, bound) if is_real(bound) else _pair(resource, bound)
            for resource, bound in self.bounds.items()
        }
        lows = Budget({r: low for r, (low, _) in pairs.items()}).limits  # checks each
        highs = Budget({r: high for r, (_, high) in pairs.items()}).limits
        for resource, pair in pairs.items():
            if lows[resource] > highs[resource]:
                raise ValueError(f"budget {resource} range {pair!r}: low must not exceed high")
        object.__setattr__(self, "bounds", {r: (lows[r], highs[r]) for r in pairs})

    @classmethod
    def parse(cls, text: str) -> BudgetRange:
        """``"params=0.02:0.2"``, resources joined by ``+`` as in ``Budget.parse``."""
        bounds: dict[str, float | tuple[float, float]] = {}
        for item in text.split("+"):
            resource, _, value = item.partition("=")
            low, colon, high = value.partition(":")
            if colon:
                bounds[resource.strip()] = (_number(item, low), _number(item, high))
            else:
                bounds |= Budget.parse(item).limits
        return cls(bounds)

    @property
    def tightest(self) -> Budget:
        """Every resource at its lowest limit: what the env must be able to meet."""
        return Budget({r: low for r, (low, _) in self.bounds.items()})

    @property
    def label(self) -> str:
        """The range's text (``parse`` reads it back)."""
        return "+".join(
            f"{r}={low:g}" if low == high else f"{r}={low:g}:{high:g}"
            for r, (low, high) in sorted(self.bounds.items())
        )

    def covers(self, budget: Budget) -> bool:
        """Whether ``budget`` limits the same resources as the range, each within its
        bounds, up to the rounding of a label (``:g``, 6 significant digits)."""
        return set(budget.limits) == set(self.bounds) and all(
            low * (1 - 1e-6) <= budget.limits[r] <= high * (1 + 1e-6)
            for r, (low, high) in self.bounds.items()
        )

    def grid(self, points: int = 3) -> list[Budget]:
        """``points`` budgets spread log-evenly from the tightest to the loosest corner
        (every ranged resource moves together), e.g. to evaluate over the range."""
        return [
            Budget({r: low * (high / low) ** t for r, (low, high) in self.bounds.items()})
            for t in np.linspace(0.0, 1.0, points)
        ]

    def sample(self, rng: np.random.Generator) -> Budget:
        """One budget, each resource drawn log-uniformly within its range from ``rng``."""
        return Budget(
            {
                r: float(np.exp(rng.uniform(np.log(low), np.log(high)))) if low < high else low
                for r, (low, high) in self.bounds.items()
            }
        )


def parse_budget(text: str) -> Budget | BudgetRange:
    """The CLI's budget text: ``"flops=0.5"`` (a ``Budget``) or, with a ``low:high`` range
    for some resource, ``"params=0.02:0.2"`` (a ``BudgetRange``)."""
    return BudgetRange.parse(text) if ":" in text else Budget.parse(text)


def budget_setting(value: Any) -> Budget | BudgetRange:
    """A budget from a setting: a ``Budget`` or ``BudgetRange``, or a mapping whose values
    are limits or ``(low, high)`` ranges (then a ``BudgetRange``). Text is the CLI's, read
    by ``Budget.parse`` and ``BudgetRange.parse``."""
    if isinstance(value, Budget | BudgetRange):
        return value
    if isinstance(value, Mapping) and not all(is_real(v) for v in value.values()):
        return BudgetRange(dict(value))
    return Budget(value)


def _pair(resource: str, bound: Any) -> tuple[Any, Any]:
    """``bound`` as ``(low, high)``; ``ValueError`` naming the resource otherwise."""
    if isinstance(bound, Sequence) and not isinstance(bound, str) and len(bound) == 2:
        return bound[0], bound[1]
    raise ValueError(
        f"budget {resource}={bound!r} must be a fraction or a (low, high) pair of fractions"
    )


def _number(item: str, text: str) -> float:
    """``text`` as a float; ``ValueError`` naming the budget item otherwise."""
    try:
        return float(text)
    except ValueError as error:
        raise ValueError(f"budget item {item!r}: {text!r} is not a number") from error
