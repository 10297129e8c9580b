"""How much of a planted teacher's mask a method recovered, up to hidden-unit order.

An MLP teacher fixes its sparse mask only up to a permutation of each hidden layer's
units: a student that learned the same function with its units in another order has the
same structure at other positions. So hidden units are first matched, layer by layer,
to the teacher's (maximum agreement of their kept connections, Hungarian algorithm).
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
