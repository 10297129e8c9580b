"""Discover the prunable layers of any ``nn.Module`` and the channel groups that couple them.

A prunable layer is an ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d`` (grouped and depthwise
convolutions included).
Channel groups come from Torch-Pruning's dependency graph: layers whose output channels
must be removed together (residual adds, concatenations) share a group.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

CONV_TYPES = (nn.Conv1d, nn.Conv2d)
PRUNABLE_TYPES = (nn.Linear, *CONV_TYPES)


def prunable_layers(
    model: nn.Module, example_input: torch.Tensor | None = None
) -> list[tuple[str, nn.Module]]:
    """Every Linear/Conv1d/Conv2d of ``model`` as ``(name, module)``, in forward order.

    Without ``example_input`` the order is the registration order, which is the forward
    order for sequential models and torchvision's; with it, one forward pass records the
    execution order (layers the pass never reaches come last, in registration order).
    Layers whose parent reads their weight without running them (the ``out_proj`` of an
    ``nn.MultiheadAttention``) are not prunable: a mask on them would never be applied.
    Raises ``ValueError`` when the model has no prunable layer.
    """
    bypassed = bypassed_layers(model)
    layers = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE_TYPES) and id(m) not in bypassed
    ]
    if not layers:
        raise ValueError(
            f"model {type(model).__name__} has no prunable layer: prune-gym prunes "
            "nn.Linear, nn.Conv1d and nn.Conv2d weights, and found none"
        )
    if example_input is None:
        return layers
    executed: list[nn.Module] = []
    hooked_forward(model, example_input, layers, before=lambda _, m, __: executed.append(m))
    position: dict[int, int] = {}
    for module in executed:
        position.setdefault(id(module), len(position))
    return sorted(layers, key=lambda item: position.get(id(item[1]), len(position)))


def hooked_forward(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    *,
    before: Callable[[str, nn.Module, tuple], None] | None = None,
    after: Callable[[str, nn.Module, tuple, Any], None] | None = None,
) -> Any:
    """``model(inputs)`` without gradients, calling ``before(name, module, args)`` and
    ``after(name, module, args, output)`` at each call of every layer in ``layers``;
    the hooks are removed afterwards, even if the pass raises. Returns the output."""
    handles = []
    for name, module in layers:
        if before is not None:
            handles.append(module.register_forward_pre_hook(partial(before, name)))
        if after is not None:
            handles.append(module.register_forward_hook(partial(after, name)))
    try:
        with torch.no_grad():
            return model(inputs)
    finally:
        for handle in handles:
            handle.remove()


def weight_shapes(model: nn.Module) -> dict[str, torch.Size]:
    """Weight shape of every prunable layer, in ``prunable_layers`` order (the scores')."""
    return {name: module.weight.shape for name, module in prunable_layers(model)}


def bypassed_layers(model: nn.Module) -> set[int]:
    """``id``s of Linear layers whose weight their parent uses directly, never calling them.

    ``nn.MultiheadAttention`` passes ``out_proj.weight`` to its functional form, so forward
    hooks (masks, costs) on ``out_proj`` never run; its parameters belong to the attention.
    """
    return {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}


def layer_kind(module: nn.Module) -> str:
    """``"linear"``, ``"conv"``, ``"depthwise"`` or ``"grouped"`` for a prunable layer."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, CONV_TYPES):
        if module.groups == 1:
            return "conv"
        if module.groups == module.in_channels:
            return "depthwise"
        return "grouped"
    raise TypeError(
        f"{type(module).__name__} is not prunable; expected nn.Linear, nn.Conv1d or nn.Conv2d"
    )


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` inside the block; every module's own mode restored on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@dataclass
class ChannelStructure:
    """How the output channels of prunable layers are coupled, from Torch-Pruning's graph.

    Built once per (model, input shape). Each group is a set of channels that must be
    removed together (a residual add couples the convs feeding it, a depthwise conv its
    input and output); for each member layer it records which root channel each of its
    output (producer) or input (consumer) indices belongs to, so channel removal is
    evaluated on masks with tensor operations only, never a graph traversal.
    """

    #: layers whose outputs are model outputs: their channels are never removable.
    output_layers: set[str]
    #: per group: the layer whose output channels index the group (Torch-Pruning's root).
    roots: list[str]
    #: per group: producer layer -> root channel of each of its output channels.
    producers: list[dict[str, torch.Tensor]]
    #: per group: consumer layer -> root channel of each input index, -1 when the index
    #: belongs to another group (a Linear after a flatten has one index per feature).
    consumers: list[dict[str, torch.Tensor]]
    #: prunable layer -> BatchNorm modules directly fed by it (they share its channels).
    batchnorms: dict[str, list[str]] = field(default_factory=dict)
    #: per group: BatchNorm -> root channel of each of its channels, -1 for other groups
    #: (a BatchNorm after a concatenation normalises channels of several groups).
    norms: list[dict[str, torch.Tensor]] = field(default_factory=list)
    #: per group: class of each root channel; channels of one class go together, since a
    #: grouped conv must keep the same channel positions in every one of its groups.
    #: ``None`` when every channel is its own class.
    ties: list[torch.Tensor | None] = field(default_factory=list)
    #: prunable layer -> why its channels cannot be removed (see ``check_supported``).
    unsupported: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, model: nn.Module, example_input: torch.Tensor) -> ChannelStructure:
        """Trace ``model`` once with Torch-Pruning and record every channel group.

        Every group Torch-Pruning finds whose channels a prunable layer produces is kept,
        whatever the pruning functions of its members (plain, depthwise and grouped
        convolutions, Linear). Groups whose removal no mask can stand for are left out
        and their producers listed in ``unsupported``: a normalisation other than
        BatchNorm (its statistics mix channels), a channel permutation (a channel
        shuffle, which Torch-Pruning maps as the identity), or a model Torch-Pruning
        cannot trace at all. Their rows can still be masked (unstructured pruning is
        unaffected) but never count as removed; channel masks refuse such models.
        """
        import torch_pruning as tp

        layers = prunable_layers(model)
        names = {id(m): name for name, m in model.named_modules()}
        prunable = {id(m): m for _, m in layers}
        with eval_mode(model):
            output_layers = _output_layers(model, layers, example_input)
            try:
                graph = tp.DependencyGraph().build_dependency(
                    model, example_inputs=example_input, verbose=False
                )
            except Exception as error:  # kept as the reason channel masks give when refused
                reason = f"Torch-Pruning cannot trace the model ({type(error).__name__}: {error})"
                return cls(
                    output_layers,
                    [],
                    [],
                    [],
                    unsupported=dict.fromkeys((name for name, _ in layers), reason),
                )
            ignored = [m for name, m in layers if name in output_layers]
            structure = cls(output_layers, [], [], [])
            for group in graph.get_all_groups(ignored_layers=ignored):
                structure._add_group(graph, group, names, prunable)
            structure.batchnorms = {
                name: [
                    names[id(out.module)]
                    for out in graph.module2node[module].outputs
                    if isinstance(out.module, nn.modules.batchnorm._BatchNorm)
                ]
                for name, module in layers
                if module in graph.module2node
            }
        return structure

    def _add_group(self, graph, group, names: dict[int, str], prunable: dict) -> None:
        """Record one Torch-Pruning group (skipped if no prunable layer produces its root)."""
        produced: dict[str, torch.Tensor] = {}
        consumed: dict[str, torch.Tensor] = {}
        norms: dict[str, torch.Tensor] = {}
        reason = _unsupported_reason(group, names)
        if reason is not None:
            for item in group.items:
                module = item.dep.target.module
                if id(module) in prunable and graph.is_out_channel_pruning_fn(item.dep.handler):
                    self.unsupported[names[id(module)]] = reason
            return
        for item in group.items:
            module, handler = item.dep.target.module, item.dep.handler
            is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
            if id(module) not in prunable and not is_norm:
                continue
            name = names[id(module)]
            if is_norm:
                size, target = module.num_features, norms
            elif graph.is_out_channel_pruning_fn(handler):
                size, target = module.weight.shape[0], produced
            elif graph.is_in_channel_pruning_fn(handler) and name not in produced:
                size, target = _input_width(module), consumed
            else:
                continue
            index = torch.full((size,), -1, dtype=torch.long)
            index[torch.tensor(item.idxs, dtype=torch.long)] = torch.tensor(
                item.root_idxs, dtype=torch.long
            )
            target[name] = index
        root = names[id(group.items[0].dep.target.module)]
        if root not in produced:
            return
        for name in produced.keys() & consumed.keys():  # a depthwise conv: inputs = outputs
            del consumed[name]
        self.roots.append(root)
        self.producers.append(produced)
        self.consumers.append(consumed)
        self.norms.append(norms)
        self.ties.append(
            _grouped_conv_ties(produced, consumed, prunable, names, produced[root].numel())
        )

    def check_supported(self) -> None:
        """Raise ``ValueError`` naming the layers whose channels cannot be removed, and why."""
        if not self.unsupported:
            return
        by_reason: dict[str, list[str]] = {}
        for name, reason in self.unsupported.items():
            by_reason.setdefault(reason, []).append(name)
        listed = "; ".join(
            f"layers {names[:4]}{f' and {len(names) - 4} more' if len(names) > 4 else ''}: {reason}"
            for reason, names in by_reason.items()
        )
        raise ValueError(
            f"channel pruning is not supported for this model, {listed}. Prune it with "
            'structure="unstructured".'
        )

    def removed_channels(self, masks) -> list[torch.Tensor]:
        """Per group, which root channels can be removed under ``masks`` (a ``MaskSet``).

        A root channel is removable when every producer zeroes its row (and, for grouped
        convs, every channel tied to it is removable too).
        """
        kept_rows = {
            name: mask.reshape(mask.shape[0], -1).any(dim=1) for name, mask in masks.masks.items()
        }
        return self.removed_roots(kept_rows)

    def removed_roots(self, kept_rows: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per group, the removable root channels given each layer's kept output rows.

        A layer missing from ``kept_rows`` keeps every row.
        """
        result = []
        for producers, ties in zip(self.producers, self.ties, strict=True):
            removed = None
            for name, roots in producers.items():
                kept = kept_rows.get(name)
                aligned = torch.zeros(roots.numel(), dtype=torch.bool)
                if kept is not None:
                    aligned[roots] = ~kept
                removed = aligned if removed is None else removed & aligned
            if ties is not None:  # a class goes only whole
                whole = torch.ones(int(ties.max()) + 1, dtype=torch.bool)
                whole.scatter_reduce_(0, ties, removed, reduce="amin")
                removed = whole[ties]
            result.append(removed)
        return result

    def norm_keep_masks(self, removed: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per BatchNorm in a group, which of its channels stay (removed root channels go).

        Zeroing a removed channel's BatchNorm scale and shift makes the masked model compute
        what the exported one does, also where the BatchNorm does not follow the producer
        directly (pre-activation blocks, after a concatenation).
        """
        keep: dict[str, torch.Tensor] = {}
        for norms, removed_roots in zip(self.norms, removed, strict=True):
            for name, roots in norms.items():
                hit = (roots >= 0) & removed_roots[roots.clamp(min=0)]
                keep[name] = keep.get(name, torch.ones_like(hit)) & ~hit
        return keep

    def importance(
        self, scores: dict[str, torch.Tensor], shapes: dict[str, torch.Size]
    ) -> dict[str, torch.Tensor]:
        """Per producer layer, the mean score per weight of the group channel each row is in.

        ``scores`` are weight-shaped (summed over the rows of producers and the input
        columns of consumers, as Torch-Pruning's group importance sums members) or
        ``(out,)`` channel sums (producers only); ``shapes`` are the weight shapes. Every
        producer of a group then ranks its channels alike, so coupled layers remove the
        same channels and save structurally. Layers in no group keep their own row means.
        """
        result = {}
        for name, score in scores.items():
            row_sum, row_size = _row_sums(score, shapes[name])
            result[name] = row_sum / row_size
        for producers, consumers, ties in zip(
            self.producers, self.consumers, self.ties, strict=True
        ):
            size = next(iter(producers.values())).numel()
            total = torch.zeros(size, dtype=torch.float64)
            count = torch.zeros(size, dtype=torch.float64)
            for name, roots in producers.items():
                row_sum, row_size = _row_sums(scores[name], shapes[name])
                total.index_add_(0, roots, row_sum)
                count.index_add_(0, roots, torch.full_like(row_sum, row_size))
            for name, roots in consumers.items():
                if scores[name].dim() < 2:  # channel sums say nothing about input columns
                    continue
                column_sum, column_size = _column_sums(scores[name], roots.numel())
                inside = roots >= 0
                total.index_add_(0, roots[inside], column_sum[inside])
                count.index_add_(0, roots[inside], torch.full_like(column_sum, column_size)[inside])
            if ties is not None:
                total = torch.zeros_like(total).index_add_(0, ties, total)[ties]
                count = torch.zeros_like(count).index_add_(0, ties, count)[ties]
            mean = total / count
            for name, roots in producers.items():
                result[name] = mean[roots]
        return result


#: normalisations whose statistics mix channels: a masked channel still changes the others.
UNSUPPORTED_NORM_TYPES = (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d)
#: autograd ops that reorder channels; Torch-Pruning maps them as the identity.
CHANNEL_PERMUTING_OPS = (
    "TransposeBackward",
    "PermuteBackward",
    "ChannelShuffleBackward",
    "NativeChannelShuffleBackward",
    "PixelShuffleBackward",
    "PixelUnshuffleBackward",
)


def _unsupported_reason(group, names: dict[int, str]) -> str | None:
    """Why no channel mask can stand for removing this group's channels, or ``None``."""
    for item in group.items:
        node = item.dep.target
        if isinstance(node.module, UNSUPPORTED_NORM_TYPES):
            return (
                f"its channels run through {type(node.module).__name__} "
                f"{names.get(id(node.module), '')!r}, whose statistics mix channels"
            )
        op = node.grad_fn.name().rstrip("0123456789") if node.grad_fn is not None else ""
        if op in CHANNEL_PERMUTING_OPS:
            return (
                f"its channels are reordered by {op} (a channel shuffle or transpose), "
                "which Torch-Pruning's dependency graph maps as if channels stayed in place"
            )
    return None


def _row_sums(score: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, int]:
    """Per output row of a layer with weight ``shape``: summed score (float64), row size.

    ``score`` is weight-shaped or already per-channel sums of shape ``(out,)``.
    """
    row_size = math.prod(shape[1:])
    if score.dim() == 1:
        return score.to(torch.float64), row_size
    return score.reshape(shape[0], -1).to(torch.float64).sum(dim=1), row_size


def _column_sums(score: torch.Tensor, inputs: int) -> tuple[torch.Tensor, int]:
    """Per input index of a layer (of ``inputs``), the summed score of the weights reading it.

    A grouped conv's weight holds ``inputs / groups`` columns; input ``i`` is read by the
    rows of group ``i // (inputs / groups)`` at column ``i % (inputs / groups)``.
    """
    out, columns = score.shape[0], score.shape[1]
    groups = inputs // columns
    per_group = score.to(torch.float64).reshape(groups, out // groups, columns, -1)
    sums = per_group.sum(dim=(1, 3)).reshape(-1)
    return sums, (out // groups) * per_group.shape[-1]


def _input_width(module: nn.Module) -> int:
    """Input channels of a convolution, input features of a Linear."""
    return module.in_channels if isinstance(module, CONV_TYPES) else module.in_features


def _output_layers(
    model: nn.Module, layers: list[tuple[str, nn.Module]], example_input: torch.Tensor
) -> set[str]:
    """Names of the prunable layers whose output tensor is (part of) the model's output."""
    produced: dict[int, str] = {}

    def record(name: str, _module: nn.Module, _args: tuple, output: Any) -> None:
        produced[id(output)] = name

    out = hooked_forward(model, example_input, layers, after=record)
    outputs = out if isinstance(out, (tuple, list)) else [out]
    return {produced[id(o)] for o in outputs if id(o) in produced}


def _grouped_conv_ties(
    produced: dict[str, torch.Tensor],
    consumed: dict[str, torch.Tensor],
    prunable: dict[int, nn.Module],
    names: dict[int, str],
    size: int,
) -> torch.Tensor | None:
    """Classes of root channels that a grouped conv in the group forces to go together.

    A conv with ``g`` groups (not depthwise) stays a valid ``g``-group conv only if every
    group loses the channels at the same positions, so the root channels it maps to the
    same position within its groups form one class. ``None`` when no member is grouped.
    """
    modules = {names[key]: module for key, module in prunable.items()}
    parent = list(range(size))

    def find(channel: int) -> int:
        while parent[channel] != channel:
            parent[channel] = parent[parent[channel]]
            channel = parent[channel]
        return channel

    grouped = False
    for members, width_of in ((produced, lambda m: m.weight.shape[0]), (consumed, _input_width)):
        for name, roots in members.items():
            module = modules[name]
            groups = getattr(module, "groups", 1)
            if groups == 1 or groups == module.weight.shape[0] == _input_width(module):
                continue  # Torch-Pruning shrinks a depthwise conv's groups with its channels
            grouped = True
            per_group = width_of(module) // groups
            positions = torch.arange(roots.numel()) % per_group
            for position in range(per_group):
                channels = roots[(positions == position) & (roots >= 0)].tolist()
                for channel in channels[1:]:
                    parent[find(channel)] = find(channels[0])
    if not grouped:
        return None
    return torch.tensor([find(channel) for channel in range(size)], dtype=torch.long)
