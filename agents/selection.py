"""Keep the training checkpoint whose deterministic policy does best on validation.

The agent's reward is a cheap proxy (a few fine-tuning steps, the reward samples); what
is reported is the accuracy after the shared fine-tuning step count. So during training the
deterministic policy is assessed the way every policy is in the end (``assess_policy`` with
``finetune_steps``), on validation only, and the best checkpoint is the model kept: the
choice is made on val, never on test. A checkpoint that meets the budget always beats one
that does not (a denser, infeasible allocation is usually more accurate), so the budget is
never traded for accuracy. The first check is the untrained policy (with density logits,
close to the reference allocation it starts from), so the model kept is never worse on val
than where training started; ``kept_timesteps`` says whether learning improved on it (0:
it did not).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from prune_gym.evaluation import assess_policy


class ValidationSelection(BaseCallback):
    """Assess the deterministic policy on val as training goes; keep the best checkpoint.

    Checks run at the start, every ``eval_freq`` env steps and at the end; the policy's
    weights at the best check (``checkpoint_rank``) are restored when training ends.
    ``history`` lists ``{"timesteps", "val_accuracy", "feasible", "budget_violation"}``,
    also logged as ``eval/...``. An allocation met before costs nothing (the context
    caches it).

    :param env: an env with the training env's settings, for deterministic episodes.
    :param finetune_steps: training of the final masks before their val accuracy.
    :param eval_freq: env steps between checks.
    :param seed: seed of the episodes and the fine-tuning (as in the final comparison).
    :param budgets: a budget-conditioned policy is assessed at each of these (the
        comparison's budgets): its check is their mean val accuracy, feasible only if it
        meets every one, with the largest violation.
    """

    def __init__(
        self,
        env: gym.Env,
        finetune_steps: int,
        eval_freq: int,
        seed: int,
        budgets: Sequence[dict[str, float]] = (),
    ) -> None:
        super().__init__()
        self.env = env
        self.budgets = list(budgets)
        self.finetune_steps = finetune_steps
        self.eval_freq = eval_freq
        self.seed = seed
        self.history: list[dict[str, Any]] = []
        self.best_rank: tuple[float, ...] | None = None
        self.kept_timesteps: int | None = None
        self._best_state: dict[str, Any] | None = None
        self._last_check = 0

    def _on_training_start(self) -> None:
        self._check()
        self.logger.dump(self.num_timesteps)  # its own row: the first rollout logs over it

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps - self._last_check >= self.eval_freq:
            self._check()

    def _on_training_end(self) -> None:
        if self._last_check != self.num_timesteps:
            self._check()
        if self._best_state is not None:
            self.model.policy.load_state_dict(self._best_state)

    def _check(self) -> None:
        """Assess the current deterministic policy; remember its weights if best so far."""
        self._last_check = self.num_timesteps
        records = [
            assess_policy(
                self.model,
                self.env,
                1,
                seed=self.seed,
                finetune_steps=self.finetune_steps,
                options=None if budget is None else {"budget": budget},
            )[0]
            for budget in self.budgets or [None]
        ]
        check = {
            "timesteps": self.num_timesteps,
            "val_accuracy": float(np.mean([record["val_accuracy"] for record in records])),
            "feasible": all(record["feasible"] for record in records),
            "budget_violation": max(record["budget_violation"] for record in records),
        }
        self.history.append(check)
        for key in ("timesteps", "val_accuracy", "feasible", "budget_violation"):
            self.logger.record(f"eval/{key}", float(check[key]))
        rank = checkpoint_rank(check)
        if self.best_rank is None or rank > self.best_rank:
            self.best_rank = rank
            self.kept_timesteps = self.num_timesteps
            self._best_state = copy.deepcopy(self.model.policy.state_dict())


def checkpoint_rank(check: dict[str, Any]) -> tuple[float, float, float]:
    """Sort key of a check, higher is better: feasible first, then the smallest budget
    violation, then val accuracy."""
    feasible = bool(check["feasible"])
    violation = 0.0 if feasible else float(check["budget_violation"])
    return (float(feasible), -violation, float(check["val_accuracy"]))
