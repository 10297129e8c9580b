"""ValidationSelection keeps the best checkpoint on val, and never trades the budget for it."""

import pytest
import torch
from stable_baselines3.common.logger import Logger

import agents.selection as selection
from agents.selection import ValidationSelection, checkpoint_rank


class ScriptedPolicy:
    """A policy whose whole state is one number: the checkpoint it came from."""

    def __init__(self) -> None:
        self.checkpoint = torch.tensor(0.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"checkpoint": self.checkpoint}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.checkpoint = state["checkpoint"].clone()


class ScriptedModel:
    def __init__(self) -> None:
        self.policy = ScriptedPolicy()
        self.num_timesteps = 0
        self.logger = Logger(folder=None, output_formats=[])


def run_checks(monkeypatch, checks: list[dict]) -> tuple[float, int]:
    """Feed ``checks`` to the callback, the first at the start, then one per rollout.

    Returns the checkpoint it restores (0: the untrained policy) and ``kept_timesteps``.
    """
    queue = iter(checks)
    monkeypatch.setattr(selection, "assess_policy", lambda *args, **kwargs: [next(queue)])
    callback = ValidationSelection(env=None, finetune_steps=0, eval_freq=100, seed=0)
    callback.init_callback(ScriptedModel())
    callback.on_training_start({}, {})
    for step in range(1, len(checks)):
        callback.model.policy.checkpoint = torch.tensor(float(step))
        callback.num_timesteps = 100 * step
        callback.on_rollout_end()
    callback.model.policy.checkpoint = torch.tensor(-1.0)  # weights after training
    callback.on_training_end()
    assert [c["timesteps"] for c in callback.history] == [100 * k for k in range(len(checks))]
    return float(callback.model.policy.checkpoint), callback.kept_timesteps


def check(accuracy: float, violation: float) -> dict:
    return {"val_accuracy": accuracy, "feasible": violation <= 0, "budget_violation": violation}


def test_a_feasible_checkpoint_beats_a_more_accurate_infeasible_one(monkeypatch):
    checks = [check(0.9, 0.5), check(0.95, 0.12), check(0.80, 0.0), check(0.85, 0.0)]
    checks.append(check(0.99, 0.01))
    assert run_checks(monkeypatch, checks) == (3.0, 300)  # the best feasible one


def test_without_a_feasible_checkpoint_the_smallest_violation_is_kept(monkeypatch):
    checks = [check(0.95, 0.3), check(0.50, 0.02), check(0.90, 0.1), check(0.97, 0.2)]
    assert run_checks(monkeypatch, checks) == (1.0, 100)


def test_among_feasible_checkpoints_val_accuracy_decides(monkeypatch):
    checks = [check(0.80, 0.0), check(0.90, 0.0), check(0.85, 0.0), check(0.90, 0.0)]
    assert run_checks(monkeypatch, checks) == (1.0, 100)  # ties keep the earlier checkpoint


def test_when_learning_never_beats_the_start_the_untrained_policy_is_kept(monkeypatch):
    checks = [check(0.90, 0.0), check(0.85, 0.0), check(0.70, 0.0), check(0.95, 0.2)]
    assert run_checks(monkeypatch, checks) == (0.0, 0)


@pytest.mark.parametrize(
    ("better", "worse"),
    [(check(0.1, 0.0), check(0.9, 0.001)), (check(0.1, 0.01), check(0.9, 0.02))],
)
def test_checkpoint_rank_orders_feasibility_then_violation_then_accuracy(better, worse):
    assert checkpoint_rank(better) > checkpoint_rank(worse)
