"""How much of a planted teacher's structure a pruned student recovered.

``support_recovery``: the inputs the teacher reads are identifiable (inputs have no order
to permute); the Jaccard index of the inputs the pruned student still reads with that
support is 1 for exact recovery and ``k / d`` for a mask that reads every input.

``aligned_overlap``: the whole mask, which an MLP teacher fixes only up to a permutation
of each hidden layer's units, so hidden units are first matched, layer by layer, to the
teacher's (maximum agreement of their kept connections, Hungarian algorithm).
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from prune_gym.pruning import MaskSet


def aligned_overlap(masks: MaskSet, truth: MaskSet) -> float:
    """Jaccard overlap of kept weights with ``truth`` after matching hidden units.

    ``truth`` lists a chain of Linear layers in forward order (inputs and outputs keep
    their order; every layer in between is permutable). The matching is exact when the
    teacher's hidden units have distinct incoming connections (ties break arbitrarily).
    """
    names = list(truth.masks)
    order: torch.Tensor | None = None  # student unit for each teacher unit of the layer below
    kept_both = kept_either = 0
    for index, name in enumerate(names):
        student, teacher = masks[name], truth[name]
        if order is not None:
            student = student[:, order]
        if index < len(names) - 1:
            agreement = (student.double() @ teacher.double().T).numpy()
            rows, cols = linear_sum_assignment(agreement, maximize=True)
            order = torch.empty(len(cols), dtype=torch.long)
            order[torch.as_tensor(cols)] = torch.as_tensor(rows)
            student = student[order]
        kept_both += int((student & teacher).sum())
        kept_either += int((student | teacher).sum())
    return kept_both / kept_either


def read_inputs(masks: MaskSet, first_layer: str) -> set[int]:
    """Input features with at least one kept weight in ``first_layer`` (Linear columns)."""
    return set(torch.nonzero(masks[first_layer].any(dim=0)).flatten().tolist())


def support_recovery(masks: MaskSet, support: torch.Tensor, first_layer: str) -> float:
    """Jaccard index of the inputs ``masks`` still read with the planted ``support``."""
    read, planted = read_inputs(masks, first_layer), set(support.tolist())
    return len(read & planted) / len(read | planted)
