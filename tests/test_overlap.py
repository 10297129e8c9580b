"""The teacher-overlap measure is blind to hidden-unit order and nothing else."""

import torch

from prune_gym.bench.overlap import aligned_overlap
from prune_gym.pruning import MaskSet


def random_chain(seed: int, density: float = 0.5) -> MaskSet:
    """Random masks of a 24-6-5-3 chain (wide enough that hidden units differ)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {"fc1": (6, 24), "fc2": (5, 6), "fc3": (3, 5)}
    return MaskSet({n: torch.rand(s, generator=generator) < density for n, s in shapes.items()})


def test_a_mask_with_permuted_hidden_units_overlaps_fully():
    truth = random_chain(0)
    p1, p2 = torch.randperm(6), torch.randperm(5)
    permuted = MaskSet(
        {
            "fc1": truth["fc1"][p1],
            "fc2": truth["fc2"][p2][:, p1],
            "fc3": truth["fc3"][:, p2],
        }
    )
    assert aligned_overlap(permuted, truth) == 1.0
    assert aligned_overlap(truth, truth) == 1.0


def test_an_unrelated_mask_overlaps_partially():
    truth, other = random_chain(0), random_chain(1)
    assert 0.0 <= aligned_overlap(other, truth) < 1.0
    empty = MaskSet({n: torch.zeros_like(m) for n, m in truth.masks.items()})
    assert aligned_overlap(empty, truth) == 0.0
