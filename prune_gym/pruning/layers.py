"""Discover the prunable layers of any ``nn.Module`` and the channel groups that couple them.

A prunable layer is an ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d`` (grouped and depthwise
convolutions included).
Channel groups come from Torch-Pruning's dependency graph: layers whose output channels
must be removed together (residual adds, concatenations) share a group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    Raises ``ValueError`` when the model has no prunable layer.
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    if not layers:
        raise ValueError(
            f"model {type(model).__name__} has no prunable layer: prune-gym prunes "
            "nn.Linear, nn.Conv1d and nn.Conv2d weights, and found none"
        )
    if example_input is None:
        return layers
    executed: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _: executed.append(mod)) for _, m in layers]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
    position: dict[int, int] = {}
    for module in executed:
        position.setdefault(id(module), len(position))
    return sorted(layers, key=lambda item: position.get(id(item[1]), len(position)))


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


def output_channels(module: nn.Module) -> int:
    """Number of output channels (convolution) or output features (Linear)."""
    return module.weight.shape[0]


@dataclass
class ChannelStructure:
    """How the output channels of prunable layers are coupled, from Torch-Pruning's graph.

    Built once per (model, input shape). Each group is a set of channels that must be
    removed together (a residual add couples the convs feeding it); for each member layer
    it records which root channel each of its output (producer) or input (consumer)
    indices belongs to, so channel removal is evaluated on masks with tensor operations
    only, never a graph traversal.
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

    @classmethod
    def build(cls, model: nn.Module, example_input: torch.Tensor) -> ChannelStructure:
        """Trace ``model`` once with Torch-Pruning and record every channel group."""
        import torch_pruning as tp

        layers = prunable_layers(model)
        names = {id(m): name for name, m in model.named_modules()}
        prunable = {id(m) for _, m in layers}
        out_fns = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)
        in_fns = (tp.prune_conv_in_channels, tp.prune_linear_in_channels)
        was_training = model.training
        model.eval()
        try:
            output_layers = _output_layers(model, layers, example_input)
            graph = tp.DependencyGraph().build_dependency(
                model, example_inputs=example_input, verbose=False
            )
            ignored = [m for name, m in layers if name in output_layers]
            roots, producers, consumers = [], [], []
            for group in graph.get_all_groups(ignored_layers=ignored):
                produced: dict[str, torch.Tensor] = {}
                consumed: dict[str, torch.Tensor] = {}
                for item in group.items:
                    module, handler = item.dep.target.module, item.dep.handler
                    if id(module) not in prunable or not (handler in out_fns or handler in in_fns):
                        continue
                    dim = 0 if handler in out_fns else 1
                    size = module.weight.shape[0] if dim == 0 else _input_width(module)
                    index = torch.full((size,), -1, dtype=torch.long)
                    index[torch.tensor(item.idxs, dtype=torch.long)] = torch.tensor(
                        item.root_idxs, dtype=torch.long
                    )
                    (produced if dim == 0 else consumed)[names[id(module)]] = index
                root = names[id(group.items[0].dep.target.module)]
                if root in produced:
                    roots.append(root)
                    producers.append(produced)
                    consumers.append(consumed)
            batchnorms = {
                name: [
                    names[id(out.module)]
                    for out in graph.module2node[module].outputs
                    if isinstance(out.module, nn.modules.batchnorm._BatchNorm)
                ]
                for name, module in layers
                if module in graph.module2node
            }
        finally:
            model.train(was_training)
        return cls(output_layers, roots, producers, consumers, batchnorms)

    def removed_channels(self, masks) -> list[torch.Tensor]:
        """Per group, which root channels every producer zeroes (they can be removed)."""
        result = []
        for producers in self.producers:
            removed = None
            for name, roots in producers.items():
                mask = masks.masks.get(name)
                if mask is None:
                    row_zero = torch.zeros(roots.numel(), dtype=torch.bool)
                else:
                    row_zero = ~mask.reshape(mask.shape[0], -1).any(dim=1)
                aligned = torch.empty_like(row_zero)
                aligned[roots] = row_zero
                removed = aligned if removed is None else removed & aligned
            result.append(removed)
        return result


def _input_width(module: nn.Module) -> int:
    """Input channels of a convolution, input features of a Linear."""
    return module.in_channels if isinstance(module, CONV_TYPES) else module.in_features


def _output_layers(
    model: nn.Module, layers: list[tuple[str, nn.Module]], example_input: torch.Tensor
) -> set[str]:
    """Names of the prunable layers whose output tensor is (part of) the model's output."""
    produced: dict[int, str] = {}

    def record(name: str):
        def hook(_module, _inputs, output):
            produced[id(output)] = name

        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in layers]
    try:
        with torch.no_grad():
            out = model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
    outputs = out if isinstance(out, (tuple, list)) else [out]
    return {produced[id(o)] for o in outputs if id(o) in produced}
