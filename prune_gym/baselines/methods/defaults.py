"""Default options of every method: the papers' (fallback) and per built-in task (scaled).

``PAPER_DEFAULTS[method]`` lists every method option with the value in the authors' code
(GraNet, FlipOut, SWD, OpenLTH, RigL). Training itself (optimizer, lr, epochs, batch size)
follows the task's recipe, which holds the scaled paper recipe, unless an entry overrides it.
``TASK_DEFAULTS[(method, task)]`` scales step counts and training length to the built-in
tasks; the digits tasks run in seconds on a CPU. ``defaults_for`` merges the two.
"""

from __future__ import annotations

from typing import Any

#: Paper settings, used for any task without an entry in ``TASK_DEFAULTS``.
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    # Zhu & Gupta's cubic schedule as GraNet's GMP baseline runs it: pruning over epochs
    # 0-80 of 160, ΔT = 1000 steps. Started from trained weights (prune a trained net, as
    # SparseML/Neural Magic recipes do); start="init" gives the from-scratch GMP baseline.
    "gmp": {
        "start": "pretrained",
        "start_fraction": 0.0,
        "end_fraction": 0.5,
        "update_every": 1000,
    },
    # GraNet (CIFAR scripts): trained from scratch, final prune epoch 80 of 160, ΔT = 1000,
    # death/regrowth rate 0.5 -> 0.005 (cosine over all steps), ERK init at density 0.5.
    "granet": {
        "start": "init",
        "variant": "dense-to-sparse",
        "init_density": 0.5,
        "distribution": "erk",
        "prune_rate": 0.5,
        "min_prune_rate": 0.005,
        "start_fraction": 0.0,
        "end_fraction": 0.5,
        "update_every": 1000,
    },
    # FlipOut README: from scratch, p = 2, half of the remaining weights per event,
    # gradient noise λ = 1 on all parameters.
    "flipout": {
        "start": "init",
        "prune_rate": 0.5,
        "power": 2.0,
        "noise_scale": 1.0,
        "noise_only_prunable": False,
    },
    # SWD code: from scratch, mu = wd = 5e-4, a from 0.1 to 1e5 (exponential per batch).
    "swd": {"start": "init", "mu": 5e-4, "a_min": 0.1, "a_max": 1e5, "structure": "unstructured"},
    # OpenLTH: 20% of the remaining weights per level, global magnitude, rewind to 500it of
    # ~62.5k for ResNet-20 (None: 2% of a round here).
    "imp": {"start": "init", "prune_fraction": 0.2, "rewind_step": None},
    # RigL: ERK, α = 0.3 cosine-decayed, ΔT = 100, updates stop at 75% of training.
    "rigl": {
        "start": "init",
        "update_every": 100,
        "drop_fraction": 0.3,
        "end_fraction": 0.75,
        "distribution": "erk",
    },
}

#: Digits tasks: 21 steps per epoch (teacher-mlp: 43). A paper ΔT of 1000 steps would never
#: fire: ΔT is 10-40 steps (about 20 updates per run); from-scratch methods train as long as
#: the dense recipe (40 epochs), GMP fine-tunes the trained net for 20, IMP rounds are 15.
_DIGITS_TASKS = ("digits-mlp", "digits-cnn", "teacher-mlp")
_DIGITS: dict[str, dict[str, Any]] = {
    "gmp": {"epochs": 20, "update_every": 10},
    "granet": {"epochs": 40, "update_every": 20},
    "flipout": {"epochs": 40},
    "swd": {"epochs": 40},
    "imp": {"epochs": 15},
    "rigl": {"epochs": 40, "update_every": 40},
}
#: MNIST-1D: 37 steps per epoch. From-scratch methods train as long as the dense recipe
#: (222 epochs, ~8,200 steps), GMP fine-tunes the trained net for half of it, IMP rounds
#: are 30 epochs; ΔT gives ~20 updates per pruning window, as on digits.
_MNIST1D_TASKS = ("mnist1d-mlp", "mnist1d-cnn")
_MNIST1D: dict[str, dict[str, Any]] = {
    "gmp": {"epochs": 111, "update_every": 100},
    "granet": {"update_every": 200},
    "imp": {"epochs": 30},
}
#: MNIST (9,000 or 5,400 steps per run) and CIFAR-10 (14,080): ΔT scaled to the run length
#: so that the pruning window holds ~31 updates, as in GraNet (ΔT 1000 in 80 x 391 steps).
_FILE_TASKS = {
    "mnist-lenet300": 150,
    "mnist-lenet5": 90,
    "fashion-lenet5": 90,
    "cifar10-resnet20": 225,
    "cifar10-vgg16": 225,
}

TASK_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    **{
        (method, task): dict(options)
        for method, options in _DIGITS.items()
        for task in _DIGITS_TASKS
    },
    **{
        (method, task): dict(options)
        for method, options in _MNIST1D.items()
        for task in _MNIST1D_TASKS
    },
    **{
        (method, task): {"update_every": every}
        for task, every in _FILE_TASKS.items()
        for method in ("gmp", "granet")
    },
}


def defaults_for(method: str, task: str) -> dict[str, Any]:
    """Options of ``method`` on the task named ``task``: paper defaults, then the task entry."""
    if method not in PAPER_DEFAULTS:
        raise ValueError(
            f"unknown method {method!r}; methods with defaults: {list(PAPER_DEFAULTS)}"
        )
    return {**PAPER_DEFAULTS[method], **TASK_DEFAULTS.get((method, task), {})}
