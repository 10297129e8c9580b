"""Physically remove pruned channels, so a channel-masked model becomes a smaller dense one."""

from __future__ import annotations

import torch
from torch import nn

from prune_gym.pruning.layers import ChannelStructure
from prune_gym.pruning.masks import MaskSet, clone_model


def export_channel_pruned(
    model: nn.Module, masks: MaskSet, example_input: torch.Tensor
) -> nn.Module:
    """A copy of ``model`` with every removable channel under ``masks`` physically removed.

    A channel is removed when every layer producing it (all layers coupled by residual
    adds, say) has it masked; Torch-Pruning's dependency graph then shrinks the consumers,
    BatchNorms and concatenations consistently. The copy computes the same outputs as
    ``masks.apply(model)`` and its dense MACs equal the masked model's ``macs_structural``.
    ``model`` itself is left untouched.
    """
    import torch_pruning as tp

    exported = clone_model(model)
    masks.apply(exported)
    masks.remove(exported)
    structure = ChannelStructure.build(exported, example_input)
    structure.check_supported()
    modules = dict(exported.named_modules())
    removed_per_group = structure.removed_channels(masks)
    graph = tp.DependencyGraph().build_dependency(
        exported, example_inputs=example_input, verbose=False
    )
    for root, removed in zip(structure.roots, removed_per_group, strict=True):
        idxs = torch.nonzero(removed).flatten().tolist()
        if not idxs:
            continue
        module = modules[root]
        prune_out = graph.get_pruner_of_module(module).prune_out_channels
        graph.get_pruning_group(module, prune_out, idxs).prune()
    return exported
