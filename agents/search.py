"""Search baselines for the learned agents: random search and CMA-ES over one action.

On a one-step env at one budget (GlobalRatio's density logits, MetricMix's mixes), the
best action is a point in a small box, and a derivative-free search is the yardstick a
learned policy has to beat at equal compute. ``ActionSearch`` is an SB3 algorithm, so
``prune-gym train`` builds, selects, saves and benches it exactly as it does PPO: the
same env steps (each candidate is one episode, scored by the env's reward), the same
vectorised env (a batch of candidates per step, rewards computed together), the same
``ValidationSelection`` (every ``eval_freq`` steps the best candidate so far is assessed
on val, and the best of those checks is kept), and a ``model.zip`` whose policy acts that
one action. Candidates come from ``method="random"`` (uniform in the action box; the first
is the zero action, which density logits make the reference allocation) or
``method="cma-es"`` (the ``cma`` package, from the zero action, bounded to the box).
"""

from __future__ import annotations

from typing import Any

import cma
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import MaybeCallback

from prune_gym.checks import check_choice, check_int, check_number

METHODS = ("random", "cma-es")


class ConstantActionPolicy(BasePolicy):
    """A policy acting one action whatever it observes: the search's best candidate."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box, **_: Any):
        super().__init__(observation_space, action_space)
        self.action = th.nn.Parameter(th.zeros(action_space.shape), requires_grad=False)

    def _predict(self, observation: th.Tensor, deterministic: bool = True) -> th.Tensor:
        return self.action.expand(len(observation), *self.action.shape)

    def forward(self, observation: th.Tensor, deterministic: bool = True) -> th.Tensor:
        return self._predict(observation, deterministic)


class ActionSearch(BaseAlgorithm):
    """Random search or CMA-ES over the action of a one-step env (see the module docstring).

    :param population: candidates per generation, at least one per env (CMA-ES's
        ``popsize``; for random search, how often the best is reported to callbacks).
    :param sigma: CMA-ES's initial step size, in action units (the box is [-1, 1]).
    """

    policy_aliases = {"MlpPolicy": ConstantActionPolicy}  # noqa: RUF012  (SB3's class attribute)
    policy: ConstantActionPolicy

    def __init__(
        self,
        policy: str | type[ConstantActionPolicy],
        env: Any,
        method: str = "random",
        population: int = 8,
        sigma: float = 0.5,
        seed: int | None = None,
        device: str = "cpu",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            learning_rate=0.0,
            seed=seed,
            device=device,
            verbose=verbose,
            support_multi_env=True,
            supported_action_spaces=(spaces.Box,),
        )
        self.method = check_choice(method, "method", METHODS)
        self.population = check_int(population, "population", low=2)
        self.sigma = check_number(sigma, "sigma", 0.0, low_open=True)
        self.best_reward = -np.inf
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(self.observation_space, self.action_space)
        self.policy = self.policy.to(self.device)

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "ActionSearch",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> ActionSearch:
        """Score ``total_timesteps`` candidates (one episode each), keeping the best."""
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        callback.on_training_start(locals(), globals())
        generation = max(self.population, self.n_envs)  # no env idles in a step
        ask, tell = self._strategy(generation)
        while self.num_timesteps < total_timesteps:
            candidates = ask(min(generation, total_timesteps - self.num_timesteps))
            rewards = self._scores(candidates, callback)
            tell(candidates, rewards)
            best = int(np.argmax(rewards))
            if rewards[best] > self.best_reward:
                self.best_reward = float(rewards[best])
                self.policy.action.data = th.as_tensor(candidates[best], dtype=th.float32)
            self.logger.record("rollout/best_reward", self.best_reward)
            self.logger.record("rollout/ep_rew_mean", float(np.mean(rewards)))
            callback.on_rollout_end()
            self.logger.dump(self.num_timesteps)
        callback.on_training_end()
        return self

    def _strategy(self, generation: int) -> tuple[Any, Any]:
        """``ask(count) -> candidates`` and ``tell(candidates, rewards)`` of the method,
        ``generation`` candidates at a time."""
        size = int(np.prod(self.action_space.shape))
        if self.method == "random":
            rng = np.random.default_rng(self.seed)
            first = [True]

            def ask_random(count: int) -> np.ndarray:
                candidates = rng.uniform(-1.0, 1.0, (count, size))
                if first[0]:  # the zero action first: with density logits, the reference
                    candidates[0] = 0.0
                    first[0] = False
                return candidates

            return ask_random, lambda candidates, rewards: None
        options = {"bounds": [-1.0, 1.0], "popsize": generation, "verbose": -9}
        options["seed"] = (self.seed or 0) + 1  # cma reads seed 0 as "from the clock"
        # cma needs two dimensions: a one-dimensional action is the first of two
        strategy = cma.CMAEvolutionStrategy(np.zeros(max(size, 2)), self.sigma, options)
        asked: list[np.ndarray] = []

        def ask_cma(count: int) -> np.ndarray:
            asked[:] = strategy.ask(count)
            return np.asarray(asked)[:, :size]

        def tell_cma(candidates: np.ndarray, rewards: np.ndarray) -> None:
            if len(candidates) == strategy.popsize:  # a last, smaller batch is only scored
                strategy.tell(list(asked), list(-rewards))

        return ask_cma, tell_cma

    def _scores(self, candidates: np.ndarray, callback: Any) -> np.ndarray:
        """Each candidate's episode reward, ``n_envs`` candidates per env step."""
        shape = self.action_space.shape
        rewards = []
        for start in range(0, len(candidates), self.n_envs):
            batch = candidates[start : start + self.n_envs]
            padded = np.concatenate([batch, np.repeat(batch[-1:], self.n_envs - len(batch), 0)])
            _, step_rewards, dones, infos = self.env.step(padded.reshape(-1, *shape))
            if not dones.all():
                raise ValueError(
                    "ActionSearch scores one action per episode: the env's episodes must "
                    "last one step (GlobalRatio-v0, MetricMix-v0), not LayerRatio-v0's"
                )
            self.num_timesteps += self.n_envs
            self._update_info_buffer(infos, dones)
            callback.update_locals(locals())
            callback.on_step()
            rewards.extend(step_rewards[: len(batch)])
        return np.asarray(rewards, dtype=np.float64)
