"""Importance scores of prunable weights: a registry of metrics (magnitude, SNIP, GraSP, ...).

Convention for every metric: **higher = more important; the lowest scores are pruned
first.** Scores are computed on the model's current (masked) weights, so an iterative
method can re-score a masked net; a pruned weight always scores exactly 0. Every metric
runs with the whole model in eval mode (BatchNorm uses its running statistics, dropout is
off), as Synaptic-Flow does by default (``train_mode=False``): this keeps scores
deterministic, leaves BatchNorm buffers untouched and makes samples independent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prune_gym.pruning.layers import eval_mode, hooked_forward, prunable_layers
from prune_gym.pruning.masks import check_structure, effective_weight, is_masked, trainable_weight

Batch = tuple[torch.Tensor, torch.Tensor | None]
Layers = list[tuple[str, nn.Module]]
MetricFn = Callable[[nn.Module, Layers, Batch | None, torch.Generator], dict[str, torch.Tensor]]

#: GraSP's softmax temperature (authors' code: ``T=200``).
GRASP_TEMPERATURE = 200.0
#: Upper bound on per-sample gradient entries held at once by ``taylor`` (128 MiB float32).
TAYLOR_CHUNK_ELEMENTS = 2**25
#: ``synflow`` scores are rescaled by a power of two when their maximum leaves this range.
_FLOAT32_SAFE_EXPONENTS = (-100, 100)


@dataclass(frozen=True)
class _Metric:
    fn: MetricFn
    needs_data: bool


_METRICS: dict[str, _Metric] = {}


def register_metric(
    name: str, fn: MetricFn, *, needs_data: bool = True, overwrite: bool = False
) -> None:
    """Register ``fn(model, layers, batch, generator) -> {layer name: weight-shaped scores}``.

    ``compute_scores`` then handles masking, channel sums, dtype and restoring the model.
    ``needs_data=False`` lets the metric run with ``batch=None``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"metric name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"metric {name!r}: fn must be callable, got {type(fn).__name__}")
    if name in _METRICS and not overwrite:
        raise ValueError(
            f"metric {name!r} is already registered; pass overwrite=True to replace it"
        )
    _METRICS[name] = _Metric(fn=fn, needs_data=needs_data)


def available_metrics() -> list[str]:
    """Names of the registered metrics, in registration order."""
    return list(_METRICS)


def compute_scores(
    model: nn.Module,
    metric: str,
    batch: Batch | None,
    *,
    structure: str = "unstructured",
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
) -> dict[str, torch.Tensor]:
    """Importance of every prunable weight (higher = keep), keyed by prunable layer name.

    ``batch`` is ``(inputs, class targets)``; data-free metrics accept ``None`` or
    ``(inputs, None)``. ``input_shape`` (one sample's shape, e.g. ``(3, 32, 32)``) stands
    in for a missing batch where ``synflow`` needs the input size. Returns float32 tensors
    of the weight's shape, or ``(out_channels,)`` sums with ``structure="channel"``.
    Pruned weights score 0: the minimum for the nonnegative metrics; ``grasp`` is signed,
    so rank only the live weights when re-scoring a masked net (``MaskBuilder`` does).
    The model is left exactly as found (values, grads, modes, requires_grad, masks).
    """
    check_structure(structure)
    entry = _lookup(metric)
    batch = _check_batch(metric, entry, batch, input_shape)
    layers = prunable_layers(model)
    generator = torch.Generator().manual_seed(_score_stream(seed))
    with _scoring_state(model, layers):
        raw = entry.fn(model, layers, batch, generator)
    if not isinstance(raw, dict):
        raise TypeError(f"metric {metric!r} returned {type(raw).__name__}; expected a dict")
    return {name: _finalise(metric, name, module, raw, structure) for name, module in layers}


def _score_stream(seed: int) -> int:
    """A generator seed derived from ``seed`` but distinct from it.

    ``torch.manual_seed(s)`` initialises a task's weights, and a generator seeded with the
    same ``s`` would replay those very numbers: random scores would then track the
    initial weights (correlation -1), not be random.
    """
    return int(np.random.SeedSequence([seed, 0x5C0E]).generate_state(1)[0])


def _lookup(metric: str) -> _Metric:
    """The registered metric called ``metric``, or a ValueError listing the available ones."""
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}; available metrics: {available_metrics()}")
    return _METRICS[metric]


def _check_batch(
    metric: str, entry: _Metric, batch: Batch | None, input_shape: Sequence[int] | None
) -> Batch | None:
    """Validate ``batch``; for a data-free metric build an input-only one from ``input_shape``."""
    if batch is None:
        if entry.needs_data:
            raise ValueError(
                f"metric {metric!r} needs data: pass batch=(inputs, targets); "
                f"data-free metrics: {[n for n, m in _METRICS.items() if not m.needs_data]}"
            )
        return None if input_shape is None else (torch.zeros((1, *input_shape)), None)
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and torch.is_tensor(batch[0])):
        raise TypeError(
            f"batch must be a tuple (inputs, targets) of tensors, got {type(batch).__name__}"
        )
    if entry.needs_data and not torch.is_tensor(batch[1]):
        raise ValueError(f"metric {metric!r} needs targets: batch[1] is {batch[1]!r}")
    return tuple(batch)


def _finalise(
    metric: str, name: str, module: nn.Module, raw: dict[str, torch.Tensor], structure: str
) -> torch.Tensor:
    """Check one layer's raw scores, zero its pruned weights, cast, and sum channels."""
    shape = _weight_shape(module)
    if name not in raw or not torch.is_tensor(raw[name]) or raw[name].shape != shape:
        got = tuple(raw[name].shape) if torch.is_tensor(raw.get(name)) else raw.get(name)
        raise ValueError(
            f"metric {metric!r} gave scores[{name!r}] = {got}; expected a tensor of the "
            f"weight's shape {tuple(shape)}"
        )
    score = raw[name].detach().to(torch.float32, copy=True)
    if is_masked(module):
        keep = module.weight_mask.to(device=score.device, dtype=torch.bool)
        score = torch.where(keep, score, torch.zeros((), dtype=score.dtype))
    if structure == "channel":
        score = score.reshape(shape[0], -1).sum(dim=1)
    return score


@contextmanager
def _scoring_state(model: nn.Module, layers: Layers) -> Iterator[None]:
    """Eval mode, empty grads and differentiable prunable weights; all restored on exit."""
    params = list(model.parameters())
    saved = [(p, p.grad, p.requires_grad) for p in params]
    # a masked layer's ``weight`` attribute is rewritten by the forward pre-hook
    hooked = [(module, module.weight) for _, module in layers if is_masked(module)]
    try:
        for p in params:
            p.grad = None
        for _, module in layers:
            trainable_weight(module).requires_grad_(True)
        with eval_mode(model), torch.enable_grad():
            yield
    finally:
        for p, grad, requires_grad in saved:
            p.requires_grad_(requires_grad)
            p.grad = grad
        for module, weight in hooked:
            module.weight = weight


# ----------------------------------------------------------------------------- metrics
def _weight_shape(module: nn.Module) -> torch.Size:
    """Shape of a prunable layer's weight."""
    return trainable_weight(module).shape


def _device(module: nn.Module) -> torch.device:
    """Device of a prunable layer's weight."""
    return trainable_weight(module).device


def _weights(layers: Layers) -> list[nn.Parameter]:
    """The trainable (``weight_orig`` or ``weight``) parameter of each layer."""
    return [trainable_weight(module) for _, module in layers]


def _grads(output: torch.Tensor, layers: Layers, create_graph: bool = False) -> list:
    """d output / d trainable weight per layer (zeros for layers the output does not use)."""
    return list(
        torch.autograd.grad(
            output,
            _weights(layers),
            create_graph=create_graph,
            allow_unused=True,
            materialize_grads=True,
        )
    )


def _magnitude(model: nn.Module, layers: Layers, batch, generator) -> dict[str, torch.Tensor]:
    """Magnitude |w| of the current (masked) weight."""
    return {name: effective_weight(module).abs() for name, module in layers}


def _random(model: nn.Module, layers: Layers, batch, generator) -> dict[str, torch.Tensor]:
    """Seeded uniform scores in (0, 1], so that only pruned weights score 0."""
    return {
        name: 1.0 - torch.rand(_weight_shape(module), generator=generator).to(_device(module))
        for name, module in layers
    }


def _snip(model: nn.Module, layers: Layers, batch, generator) -> dict[str, torch.Tensor]:
    """SNIP: |w * dL/dw| for the mean cross-entropy L of the batch (Lee et al., 2019)."""
    inputs, targets = batch
    grads = _grads(F.cross_entropy(model(inputs), targets), layers)
    return {
        name: (effective_weight(module) * grad).abs()
        for (name, module), grad in zip(layers, grads, strict=True)
    }


def _taylor(model: nn.Module, layers: Layers, batch, generator) -> dict[str, torch.Tensor]:
    """First-order Taylor: sum over samples i of |w * dL_i/dw| (per-sample gradients).

    Unlike SNIP's |w * mean gradient|, per-sample contributions cannot cancel. Per-sample
    gradients come from ``torch.func`` (vmap over grad), in chunks to bound memory.
    """
    inputs, targets = batch
    names = [_param_path(name, module) for name, module in layers]
    params = {path: w.detach() for path, w in zip(names, _weights(layers), strict=True)}

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        logits = torch.func.functional_call(model, p, (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    per_sample = torch.func.vmap(torch.func.grad(sample_loss), in_dims=(None, 0, 0))
    totals = {path: torch.zeros_like(w) for path, w in params.items()}
    chunk = max(1, TAYLOR_CHUNK_ELEMENTS // sum(w.numel() for w in params.values()))
    for xs, ys in zip(inputs.split(chunk), targets.split(chunk), strict=True):
        for path, grad in per_sample(params, xs, ys).items():
            totals[path] += grad.abs().sum(dim=0)
    return {
        name: effective_weight(module).abs() * totals[path]
        for (name, module), path in zip(layers, names, strict=True)
    }


def _param_path(layer_name: str, module: nn.Module) -> str:
    """Dotted path of a layer's trainable weight inside the model."""
    attr = "weight_orig" if is_masked(module) else "weight"
    return f"{layer_name}.{attr}" if layer_name else attr


def _grasp(model: nn.Module, layers: Layers, batch, generator) -> dict[str, torch.Tensor]:
    """GraSP importance w * Hg, i.e. minus the paper's score S = -w * Hg (Wang et al., 2020).

    g = dL/dw and Hg = d(g_detached . dL/dw)/dw for the cross-entropy of logits / T
    (T = 200). GraSP removes the highest S, i.e. the lowest w * Hg, which is what pruning
    the lowest importance does here. The authors sum g and Hg over two half batches: the
    same ranking (4x our values for an even batch size).
    """
    inputs, targets = batch
    loss = F.cross_entropy(model(inputs) / GRASP_TEMPERATURE, targets)
    grads = _grads(loss, layers, create_graph=True)
    g_dot_grad = sum((grad.detach() * grad).sum() for grad in grads)
    hessian_grads = _grads(g_dot_grad, layers)
    return {
        name: effective_weight(module) * hg
        for (name, module), hg in zip(layers, hessian_grads, strict=True)
    }


def _synflow(model: nn.Module, layers: Layers, batch, generator) -> dict[str, torch.Tensor]:
    """SynFlow: |w * dR/dw| with R = sum of outputs of the all-|.| net on an all-ones input.

    Data-free: only the batch's input shape is used (or a first Linear layer's in_features).
    Runs in float64; if the scores leave float32's range they are all multiplied by one
    power of two (ratios and ranking unchanged).
    """
    shape = _sample_shape(layers, batch)
    with _absolute_float64(model):
        ones = torch.ones((1, *shape), dtype=torch.float64, device=_device(layers[0][1]))
        grads = _grads(model(ones).sum(), layers)
        scores = {
            name: (effective_weight(module) * grad).abs()
            for (name, module), grad in zip(layers, grads, strict=True)
        }
    return _fit_float32(scores)


def _sample_shape(layers: Layers, batch: Batch | None) -> tuple[int, ...]:
    """One sample's input shape: from the batch, else from a first Linear layer."""
    if batch is not None:
        return tuple(batch[0].shape[1:])
    first = layers[0][1]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ValueError(
        f"synflow cannot infer the input shape of a model whose first prunable layer is "
        f"{type(first).__name__}; pass a batch (only its input shape is used) or input_shape"
    )


@contextmanager
def _absolute_float64(model: nn.Module) -> Iterator[None]:
    """Temporarily swap every float parameter and buffer for its float64 absolute value."""
    params = [p for p in model.parameters() if p.is_floating_point()]
    originals = [p.data for p in params]
    buffers = [
        (module, key, tensor)
        for module in model.modules()
        for key, tensor in module._buffers.items()
        if tensor is not None and tensor.is_floating_point()
    ]
    try:
        with torch.no_grad():
            for p in params:
                p.data = p.data.abs().double()
            for module, key, tensor in buffers:
                module._buffers[key] = tensor.abs().double()
        yield
    finally:
        for p, data in zip(params, originals, strict=True):
            p.data = data
        for module, key, tensor in buffers:
            module._buffers[key] = tensor


def _fit_float32(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scale all scores by one power of two when their maximum is outside float32's range."""
    peak = max(score.max() for score in scores.values())
    if peak == 0:
        return scores
    _, exponent = torch.frexp(peak)
    low, high = _FLOAT32_SAFE_EXPONENTS
    if low <= int(exponent) <= high:
        return scores
    return {name: torch.ldexp(score, -exponent) for name, score in scores.items()}


def input_norms(model: nn.Module, layers: Layers, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each layer's L2 norm of every input feature over ``inputs`` (float64).

    A Linear's input feature j is its j-th input over every sample and position (every
    token of a sequence); a convolution's is input channel j over every sample and
    spatial position. One forward pass, with hooks on the prunable layers.
    """
    squares: dict[str, torch.Tensor] = {}

    def record(name: str, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().to(torch.float64)
        if isinstance(module, nn.Linear):
            total = x.reshape(-1, x.shape[-1]).pow(2).sum(dim=0)
        else:  # (batch, channels, *spatial)
            total = x.pow(2).sum(dim=[0, *range(2, x.dim())])
        squares[name] = squares.get(name, 0) + total

    hooked_forward(model, inputs, layers, before=record)
    missing = [name for name, _ in layers if name not in squares]
    if missing:
        raise ValueError(f"wanda: the forward pass never reached layers {missing}")
    return {name: total.sqrt() for name, total in squares.items()}


def _wanda(model: nn.Module, layers: Layers, batch, generator) -> dict[str, torch.Tensor]:
    """Wanda: |W_ij| * ||X_j||_2 (Sun et al., 2024), X_j the layer's j-th input feature over
    the calibration batch (``input_norms``); no gradient, one forward pass.

    A convolution's weight [o, c, ...] gets input channel c's norm (of its group's
    channels, for a grouped one), a per-channel form of the paper's Linear score.
    """
    inputs, _ = batch
    norms = input_norms(model, layers, inputs)
    scores = {}
    for name, module in layers:
        weight = effective_weight(module).abs()
        norm = norms[name].to(device=weight.device, dtype=weight.dtype)
        if isinstance(module, nn.Linear):
            scores[name] = weight * norm
            continue
        groups = module.groups
        per_output = norm.view(groups, -1).repeat_interleave(weight.shape[0] // groups, dim=0)
        scores[name] = weight * per_output.view(*per_output.shape, *[1] * (weight.dim() - 2))
    return scores


def group_ranks(
    scores: dict[str, torch.Tensor], size: int | None = None
) -> dict[str, torch.Tensor]:
    """Each weight's rank within its group (1 = the group's lowest score; ties: the
    earlier position ranks lower): ``size`` consecutive inputs of an output row (a row's
    last group may be shorter), or the whole row (``None``).

    Ranking by them makes every group a comparison group: a layer pruned at ratio r loses
    about ``r`` of every group, the lowest first. Whole rows are Wanda's per-output
    comparison; groups of 4 at ratio 0.5, in rows of a multiple of 4 inputs, are exactly
    2:4 (the two lowest of every four).
    """
    ranked = {}
    for name, score in scores.items():
        rows = score.reshape(score.shape[0], -1).to(torch.float64)
        width = rows.shape[1] if size is None else size
        padding = -rows.shape[1] % width  # +inf pads the last group: they rank above all
        padded = F.pad(rows, (0, padding), value=math.inf).reshape(-1, width)
        order = torch.sort(padded, dim=1, stable=True).indices
        ranks = torch.empty_like(order)
        positions = torch.arange(width, device=rows.device).expand_as(order)
        ranks.scatter_(1, order, positions)
        ranks = ranks.reshape(rows.shape[0], -1)[:, : rows.shape[1]]
        ranked[name] = (ranks + 1).to(torch.float32).reshape(score.shape)
    return ranked


def _wanda_row(model: nn.Module, layers: Layers, batch, generator) -> dict[str, torch.Tensor]:
    """Wanda with per-output-row comparison groups (the paper's default): ``group_ranks``
    of the ``wanda`` scores over whole rows. Meant for per-layer ratios: one global
    threshold on row ranks prunes every layer alike."""
    return group_ranks(_wanda(model, layers, batch, generator))


def _two_of_four(metric: MetricFn) -> MetricFn:
    """``metric``'s ranks within groups of 4 consecutive inputs: at a layer ratio of 0.5
    (``uniform`` at ``params=0.5``) the masks are exactly 2:4."""

    def ranked(model: nn.Module, layers: Layers, batch, generator) -> dict[str, torch.Tensor]:
        return group_ranks(metric(model, layers, batch, generator), 4)

    return ranked


register_metric("magnitude", _magnitude, needs_data=False)
register_metric("random", _random, needs_data=False)
register_metric("snip", _snip)
register_metric("taylor", _taylor)
register_metric("grasp", _grasp)
register_metric("synflow", _synflow, needs_data=False)
register_metric("wanda", _wanda)
register_metric("wanda-row", _wanda_row)
register_metric("magnitude-2:4", _two_of_four(_magnitude), needs_data=False)
register_metric("wanda-2:4", _two_of_four(_wanda))
