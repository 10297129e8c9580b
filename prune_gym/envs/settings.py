"""The settings every env is made with: one frozen dataclass per env family.

An env's settings are validated once, when the env is made (``PruningSettings.__post_init__``
and its subclasses'), and are the env's whole pickling state, so an env family that adds a
setting declares it as a field of a ``PruningSettings`` subclass and it survives ``pickle``
and ``SubprocVecEnv`` (see docs/design.md, Environments). The fields also render the
Arguments table of each env's docstring (``settings_table``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import field
from inspect import formatannotation
from typing import Any, ClassVar

from prune_gym.checks import check_fraction, check_int, check_unique, did_you_mean
from prune_gym.pruning import Budget
from prune_gym.pruning.cost import BudgetRange, budget_setting
from prune_gym.pruning.masks import check_structure
from prune_gym.tasks import Task

DEFAULT_METRICS = ("magnitude", "snip", "grasp", "synflow")
DEFAULT_BUDGET = {"flops": 0.5}


#: settings renamed since an earlier version: old name -> new name (still read, with a warning).
RENAMED = {"finetune_steps": "reward_finetune_steps"}


def renamed_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with names renamed since an earlier version (``RENAMED``) updated.

    An old name warns (``DeprecationWarning``), so saved ``run.json`` files still load;
    giving both names is a ``TypeError``.
    """
    updated = dict(settings)
    for old, new in RENAMED.items():
        if old in updated:
            if new in updated:
                raise TypeError(f"give {new}, not also its old name {old}")
            warnings.warn(
                f"the env setting {old} is now {new} ({old} names the training of final "
                "masks in train and bench)",
                DeprecationWarning,
                stacklevel=3,
            )
            updated[new] = updated.pop(old)
    return updated


def doc(text: str) -> dict[str, str]:
    """A settings field's metadata: the description its Arguments row shows."""
    return {"doc": text}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruningSettings:
    """The settings every prune-gym env takes (``gymnasium.make(id, **settings)``).

    Subclasses add their family's fields (``frozen=True, kw_only=True`` dataclasses) and
    check them in ``__post_init__``, calling this one's.
    """

    #: the rewards the env can pay (``reward``).
    REWARDS: ClassVar[tuple[str, ...]] = ("accuracy", "loss")
    #: the render modes besides None.
    RENDER_MODES: ClassVar[tuple[str, ...]] = ("ansi", "rgb_array")
    #: the budget when none is given (None: the env derives its own).
    DEFAULT_BUDGET: ClassVar[Mapping[str, float] | None] = DEFAULT_BUDGET

    task: str | Task = field(default="digits-mlp", metadata=doc("registered task name or a `Task`"))
    budget: Mapping[str, float | tuple[float, float]] | Budget | BudgetRange | None = field(
        default=None,
        metadata=doc(
            "resource (`params`, `flops`, `latency`) -> largest fraction of the dense value, "
            "in (0, 1], or a `(low, high)` range: one budget drawn per episode (log-uniform; "
            "`reset(options={'budget': ...})` fixes one); default `{'flops': 0.5}`; "
            "`latency` needs `structure='channel'`"
        ),
    )
    structure: str = field(default="unstructured", metadata=doc("`'unstructured'` or `'channel'`"))
    metrics: tuple[str, ...] = field(
        default=DEFAULT_METRICS, metadata=doc("importance scores observed or mixed, each once")
    )
    reward: str = field(
        default="accuracy",
        metadata=doc(
            "`'accuracy'` on the reward samples, or `'loss'`: minus their mean cross-entropy"
        ),
    )
    reward_samples: int | None = field(
        default=None,
        metadata=doc("fixed samples of the task's reward split scored; default all, up to 1000"),
    )
    reward_finetune_steps: int = field(
        default=0,
        metadata=doc(
            "fine-tuning steps of the pruned net before the reward (`finetune_steps` until 0.2)"
        ),
    )
    min_ratio: float = field(default=0.0, metadata=doc("smallest pruning ratio an action maps to"))
    max_ratio: float | None = field(
        default=None,
        metadata=doc("largest pruning ratio an action maps to; default 0.99, or 0.9 with channels"),
    )
    rank_by: str = field(
        default="magnitude", metadata=doc("metric ranking the weights inside a layer")
    )
    device: str = field(
        default="cpu", metadata=doc("torch device, one this machine has (e.g. `'cuda'`)")
    )
    render_mode: str | None = field(default=None, metadata=doc("None, `'ansi'` or `'rgb_array'`"))
    weights: str = field(
        default="pretrained",
        metadata=doc("`'pretrained'` (the trained dense net) or `'init'` (its initialisation)"),
    )

    def __post_init__(self) -> None:
        if self.render_mode is not None and self.render_mode not in self.RENDER_MODES:
            raise ValueError(
                f"render_mode={self.render_mode!r} is not supported; expected None or one of "
                f"{list(self.RENDER_MODES)}"
            )
        self._set("structure", check_structure(self.structure))
        if self.budget is not None or self.DEFAULT_BUDGET is not None:
            budget = self.DEFAULT_BUDGET if self.budget is None else self.budget
            self._set("budget", budget_setting(budget))
        latency = self.budget is not None and "latency" in self.budget_resources
        if latency and self.structure != "channel":
            raise ValueError(
                "a latency budget is measured on the exported model, so it needs "
                f'structure="channel"; got structure={self.structure!r}'
            )
        if self.reward not in self.REWARDS:
            raise ValueError(
                f"reward={self.reward!r} is not supported here; expected {self.REWARDS}"
            )
        self._set(
            "reward_finetune_steps",
            check_int(self.reward_finetune_steps, "reward_finetune_steps", low=0),
        )
        if isinstance(self.metrics, str):
            raise TypeError(
                f"metrics must be a list of metric names, not the string {self.metrics!r}"
            )
        self._set("metrics", check_unique(self.metrics, "metrics"))
        self._set("min_ratio", check_fraction(self.min_ratio, "min_ratio"))
        if self.max_ratio is None:
            self._set("max_ratio", 0.9 if self.structure == "channel" else 0.99)
        self._set("max_ratio", check_fraction(self.max_ratio, "max_ratio"))
        if self.min_ratio > self.max_ratio:
            raise ValueError(f"min_ratio={self.min_ratio} exceeds max_ratio={self.max_ratio}")

    @property
    def budget_resources(self) -> tuple[str, ...]:
        """The budgeted resources, of a fixed budget or of a range."""
        if isinstance(self.budget, BudgetRange):
            return tuple(self.budget.bounds)
        return () if self.budget is None else tuple(self.budget.limits)

    def _set(self, name: str, value: Any) -> None:
        """Replace a field by its checked form (the dataclass is frozen to everyone else)."""
        object.__setattr__(self, name, value)

    @property
    def reward_train_steps(self) -> int:
        """Optimizer steps one episode's reward trains the pruned net."""
        return self.reward_finetune_steps

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names: the keyword arguments the env takes."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def check_names(cls, names: Any, owner: str) -> None:
        """``TypeError`` naming any of ``names`` that is not a setting of ``owner``."""
        unknown = [name for name in names if name not in cls.names()]
        if unknown:
            hints = "".join(did_you_mean(name, cls.names()) for name in unknown)
            raise TypeError(
                f"{owner} does not take the setting(s) {unknown}; it takes "
                f"{sorted(cls.names())}.{hints}"
            )


def settings_table(settings: type[PruningSettings]) -> str:
    """The settings as a Markdown table (Gymnasium's env-doc Arguments style)."""
    rows = ["| Parameter | Type | Default | Description |", "|---|---|---|---|"]
    for entry in dataclasses.fields(settings):
        if entry.init:
            kind = entry.type if isinstance(entry.type, str) else formatannotation(entry.type)
            kind = kind.replace("|", "\\|")
            text = entry.metadata.get("doc", "")
            rows.append(f"| `{entry.name}` | `{kind}` | `{entry.default!r}` | {text} |")
    return "\n".join(rows)
