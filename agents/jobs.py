"""The ``prune-gym train`` and ``prune-gym eval`` jobs.

``train`` builds the env, trains an agent with a live progress bar (reward, cost,
multipliers) and TensorBoard logs, saves ``model.zip`` and ``run.json``, then compares the
learned policy with every fixed-policy baseline on the same env, task and budget
(``summary.md``) and plots the training curves (``training.png``). ``eval`` reloads a
saved run and repeats the comparison. SB3 zips are pickle: load only trusted files.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3 import PPO, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from tqdm import tqdm

import prune_gym  # noqa: F401  (registers the env ids)
from agents.panning_agent import PanningAgent
from agents.ppo_lagrangian import PPOLagrangian
from prune_gym.baselines import make_policy, supported_policies
from prune_gym.checks import check_choice, check_int
from prune_gym.envs import check_env_id
from prune_gym.evaluation import evaluate
from prune_gym.wrappers import BudgetProjection, CostMonitor, LagrangianReward

AGENTS = ("ppo-lag", "ppo", "panning")
HYPERPARAMS = Path(__file__).with_name("zoo") / "hyperparams.yml"
#: Zoo-file keys that are not algorithm keywords.
ZOO_ONLY_KEYS = ("policy", "n_timesteps", "n_envs", "monitor_kwargs", "normalize")
LAGRANGE_KEYS = ("lagrange_update", "lagrange_lr", "cost_window")
#: the Panning agent's warm-up and episode length for CLI-sized runs.
PANNING_ENV = {"iterations": 10}


@dataclass
class RunConfig:
    """Everything that defines a training run; saved as ``run.json`` next to the model."""

    env: str = "prune_gym/GlobalRatio-v0"
    task: str = "digits-cnn"
    budget: dict[str, float] = field(default_factory=lambda: {"flops": 0.5})
    agent: str = "ppo-lag"
    timesteps: int = 6000
    seed: int = 0
    structure: str = "unstructured"
    lam: float = 1.0
    finetune_steps: int = 0
    eval_episodes: int = 5

    def __post_init__(self) -> None:
        check_choice(self.agent, "agent", AGENTS)
        check_int(self.timesteps, "timesteps", low=1)
        check_env_id(self.env)
        if self.agent == "panning":
            self.env = "prune_gym/Panning-v0"
            if set(self.budget) != {"params"}:
                raise ValueError(
                    "the Panning agent prunes to a target sparsity: give one --budget "
                    f"params=<1 - target>, not {self.budget}"
                )

    @classmethod
    def from_file(cls, path: Path) -> RunConfig:
        """The config a ``run.json`` holds; ``ValueError`` naming the file if it is unusable."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {path}: {error}") from error
        accepted = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(accepted)) if isinstance(raw, dict) else None
        if unknown is None or unknown:
            raise ValueError(
                f"{path} holds {'unknown keys ' + str(unknown) if unknown else repr(raw)}; "
                f"a run.json is an object with keys from {accepted}"
            )
        return cls(**raw)

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the evaluation env (the budget the agent must meet)."""
        kwargs: dict[str, Any] = {"task": self.task, "budget": self.budget}
        if self.agent == "panning":
            return kwargs | PANNING_ENV
        return kwargs | {"structure": self.structure}


def algorithm_kwargs(config: RunConfig) -> dict[str, Any]:
    """Hyperparameters from ``agents/zoo/hyperparams.yml`` (one source for CLI and Zoo)."""
    table = yaml.safe_load(HYPERPARAMS.read_text())
    if config.env not in table:
        raise ValueError(f"no hyperparameters for {config.env} in {HYPERPARAMS}")
    kwargs = {k: v for k, v in table[config.env].items() if k not in ZOO_ONLY_KEYS}
    if config.agent == "ppo":
        kwargs = {k: v for k, v in kwargs.items() if k not in LAGRANGE_KEYS}
    return kwargs


class TrainingProgress(BaseCallback):
    """A progress bar with live reward, cost and multipliers; a history for the plot."""

    def __init__(self, total: int, resources: list[str]) -> None:
        super().__init__()
        self.total = total
        self.resources = resources
        self.history: list[dict[str, Any]] = []
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, desc="training", unit="step")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_rollout_end(self) -> None:
        episodes = list(self.model.ep_info_buffer)
        if not episodes:
            return
        row: dict[str, Any] = {
            "timesteps": self.num_timesteps,
            "reward": statistics.fmean(e["r"] for e in episodes),
        }
        for resource in self.resources:
            costs = [e[f"cost_{resource}"] for e in episodes if f"cost_{resource}" in e]
            if costs:
                row[f"cost_{resource}"] = statistics.fmean(costs)
        for resource, value in getattr(self.model, "lagrange_multipliers", {}).items():
            row[f"lambda_{resource}"] = value
        self.history.append(row)
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k != "timesteps"})

    def _on_training_end(self) -> None:
        self.bar.close()


def make_training_env(config: RunConfig) -> DummyVecEnv:
    """The monitored training env (``ppo`` also prices violations with ``LagrangianReward``)."""

    def build() -> gym.Env:
        env = gym.make(config.env, **config.env_kwargs())
        if config.agent == "ppo":
            env = LagrangianReward(env, config.lam)
        return CostMonitor(Monitor(env))

    return DummyVecEnv([build])


def build_model(config: RunConfig, out: Path) -> BaseAlgorithm:
    """The untrained agent, logging to ``out/tensorboard``."""
    tensorboard = str(out / "tensorboard")
    if config.agent == "panning":
        low = max(0.0, 1.0 - config.budget["params"] - 0.1)
        agent = PanningAgent(
            config.task,
            learning_starts=min(500, config.timesteps // 5),
            seed=config.seed,
            env_kwargs=PANNING_ENV | {"target_range": (low, min(0.995, low + 0.2))},
            tensorboard_log=tensorboard,
        )
        return agent.model
    cls = PPOLagrangian if config.agent == "ppo-lag" else PPO
    return cls(
        "MlpPolicy",
        make_training_env(config),
        seed=config.seed,
        device="cpu",
        tensorboard_log=tensorboard,
        **algorithm_kwargs(config),
    )


def load_model(config: RunConfig, path: Path) -> BaseAlgorithm:
    """A saved agent (pickle inside the zip: load only trusted files)."""
    cls = {"ppo-lag": PPOLagrangian, "ppo": PPO, "panning": TD3}[config.agent]
    return cls.load(path, device="cpu")


def compare(config: RunConfig, model: BaseAlgorithm) -> list[dict[str, Any]]:
    """The learned policy and every fixed policy on the same env, task and budget.

    On ratio envs the learned policy is also shown behind ``BudgetProjection``, the way to
    deploy it when the budget must hold in every episode.
    """
    env = gym.make(config.env, **config.env_kwargs())
    learned = f"learned ({config.agent})"
    candidates: dict[str, tuple[Any, gym.Env, str]] = {learned: (model, env, "learned")}
    if config.agent != "panning":
        candidates[f"{learned} + projection"] = (model, BudgetProjection(env), "learned")
    for name in supported_policies(env):
        candidates[name] = (make_policy(name, env, seed=config.seed), env, "baseline")
    rows = []
    for name, (policy, policy_env, kind) in tqdm(
        candidates.items(), desc="comparing with baselines", unit="policy"
    ):
        records = evaluate(
            policy,
            policy_env,
            config.eval_episodes,
            seed=config.seed,
            finetune_steps=config.finetune_steps,
        )
        rows.append(
            {
                "policy": name,
                "kind": kind,
                "episodes": len(records),
                **{
                    key: statistics.fmean(float(r[key]) for r in records)
                    for key in ("val_accuracy", "test_accuracy", "macs_ratio", "params_ratio")
                },
                "feasible": statistics.fmean(float(r["feasible"]) for r in records),
            }
        )
    return rows


def comparison_table(config: RunConfig, rows: list[dict[str, Any]]) -> str:
    """Markdown table of ``compare``'s rows, the best feasible baseline marked."""
    budget = ", ".join(f"{k} <= {v:g}" for k, v in config.budget.items())
    baselines = [r for r in rows if r["kind"] == "baseline" and r["feasible"] == 1.0]
    best = max(baselines, key=lambda r: r["val_accuracy"], default=None)
    lines = [
        f"# {config.agent} on {config.env}, task {config.task}, budget {budget}",
        "",
        f"Deterministic policies, {config.eval_episodes} episodes each, fine-tuning "
        f"{config.finetune_steps} steps. Best baseline (by val accuracy, feasible): "
        f"{best['policy'] if best else 'none'} (*).",
        "",
        "| policy | val acc. | test acc. | MACs ratio | params ratio | feasible rate |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        mark = " (*)" if row is best else ""
        lines.append(
            f"| {row['policy']}{mark} | {row['val_accuracy']:.4f} | {row['test_accuracy']:.4f} "
            f"| {row['macs_ratio']:.4f} | {row['params_ratio']:.4f} | {row['feasible']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def plot_training(history: list[dict[str, Any]], config: RunConfig, path: Path) -> None:
    """``training.png``: reward, cost against its limit, and the multipliers over time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 7.5), dpi=100)
    FigureCanvasAgg(figure)
    steps = [row["timesteps"] for row in history]
    panels = figure.subplots(3, 1, sharex=True)
    panels[0].plot(steps, [row["reward"] for row in history], color="tab:green")
    panels[0].set_ylabel("episode reward")
    for resource, limit in config.budget.items():
        values = [row.get(f"cost_{resource}") for row in history]
        (line,) = panels[1].plot(steps, values, label=f"{resource} used")
        panels[1].axhline(limit, linestyle="--", color=line.get_color(), label=f"{resource} limit")
        lambdas = [row.get(f"lambda_{resource}") for row in history]
        if any(value is not None for value in lambdas):
            panels[2].plot(steps, lambdas, label=f"lambda {resource}")
    panels[1].set_ylabel("episode cost")
    panels[1].legend(fontsize=7)
    panels[2].set_ylabel("Lagrange multiplier")
    panels[2].set_xlabel("timesteps")
    if panels[2].lines:
        panels[2].legend(fontsize=7)
    panels[0].set_title(f"{config.agent} on {config.env} ({config.task})", fontsize=9)
    for axes in panels:
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def train(config: RunConfig, out: str | Path) -> str:
    """Train, save, compare with every baseline; returns the comparison table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(config, out)  # validates the task, env and budget first
    (out / "run.json").write_text(json.dumps(asdict(config), indent=1))
    progress = TrainingProgress(config.timesteps, list(config.budget))
    start = time.perf_counter()
    model.learn(total_timesteps=config.timesteps, callback=progress)
    wall = time.perf_counter() - start
    model.save(out / "model.zip")
    (out / "history.json").write_text(json.dumps(progress.history, indent=1))
    if progress.history:
        plot_training(progress.history, config, out / "training.png")
    table = comparison_table(config, compare(config, model))
    table += f"\nTraining: {config.timesteps} timesteps in {wall:.0f} s.\n"
    (out / "summary.md").write_text(table)
    return table


def evaluate_saved(model_path: str | Path, episodes: int | None = None) -> str:
    """Reload ``model.zip`` and its ``run.json``, and redo the comparison table."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}; give the model.zip that train wrote")
    run_file = model_path.with_name("run.json")
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file} not found: eval needs the run.json that train writes")
    config = RunConfig.from_file(run_file)
    if episodes is not None:
        config.eval_episodes = episodes
    return comparison_table(config, compare(config, load_model(config, model_path)))
