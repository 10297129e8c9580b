"""Lagrange multiplier update rules: projected SGD and PID (Stooke et al., 2020).

A rule updates one resource's multiplier from the mean episode cost ``Jc`` and its limit
``d``. Its state is plain numbers (``state_dict``), so it can be saved as JSON in SB3's zip
and restored with ``load_state_dict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import Any

from prune_gym.checks import check_int, check_number


class LagrangeRule(ABC):
    """One resource's multiplier update, called once per ``train()`` with the window's mean cost."""

    def __init__(self, max_value: float) -> None:
        self.max_value = check_number(max_value, "lagrange_max", 0.0)

    @abstractmethod
    def update(self, multiplier: float, cost: float, limit: float) -> float:
        """The new multiplier, in [0, max_value], given the mean episode cost and its limit."""

    def state_dict(self) -> dict[str, Any]:
        """The rule's internal state as plain numbers (empty for stateless rules)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state returned by ``state_dict``; a stateless rule accepts only ``{}``."""
        if state:
            raise ValueError(f"{type(self).__name__} has no state to load; got {state!r}")

    def _project(self, value: float) -> float:
        """``value`` clipped into the feasible multipliers [0, max_value]."""
        return min(max(0.0, float(value)), self.max_value)


class SGDLagrange(LagrangeRule):
    """Projected gradient ascent on the dual: ``lam <- clip(lam + lr * (Jc - d), 0, max)``."""

    def __init__(self, lr: float, max_value: float = 100.0) -> None:
        super().__init__(max_value)
        self.lr = check_number(lr, "lagrange_lr", 0.0)

    def update(self, multiplier: float, cost: float, limit: float) -> float:
        """One projected SGD step on the constraint violation ``cost - limit``."""
        return self._project(multiplier + self.lr * (cost - limit))


class PIDLagrange(LagrangeRule):
    """PID Lagrangian of Stooke, Achiam & Abbeel (2020), in its positional form (as CPPOPID).

    ``I <- max(0, I + ki * e)`` with ``e = Jc - d`` (``I`` starts at ``init``); ``P`` is an
    EMA of ``e``; ``D = max(0, EMA(Jc) - EMA(Jc) from delay updates ago)``; the multiplier
    is ``clip(kp * P + I + kd * D, 0, max)``. The integral term alone is the SGD rule;
    P damps overshoot and D reacts to a rising cost before it crosses the limit.
    """

    def __init__(
        self,
        kp: float = 0.1,
        ki: float = 0.01,
        kd: float = 0.01,
        delay: int = 10,
        alpha_p: float = 0.95,
        alpha_d: float = 0.95,
        init: float = 0.0,
        max_value: float = 100.0,
    ) -> None:
        super().__init__(max_value)
        self.kp = check_number(kp, "pid_kp", 0.0)
        self.ki = check_number(ki, "pid_ki", 0.0)
        self.kd = check_number(kd, "pid_kd", 0.0)
        self.delay = check_int(delay, "pid_delay", low=1)
        self.alpha_p = check_number(alpha_p, "pid_alpha_p", 0.0, 1.0)
        self.alpha_d = check_number(alpha_d, "pid_alpha_d", 0.0, 1.0)
        self.integral = check_number(init, "lagrange_init", 0.0, self.max_value)
        self.error_ema = 0.0
        self.cost_ema = 0.0
        self.cost_emas: deque[float] = deque([0.0], maxlen=delay)

    def update(self, multiplier: float, cost: float, limit: float) -> float:
        """One PID step; ``multiplier`` is not used (the output depends only on the state)."""
        error = cost - limit
        self.integral = max(0.0, self.integral + self.ki * error)
        self.error_ema = self.alpha_p * self.error_ema + (1.0 - self.alpha_p) * error
        self.cost_ema = self.alpha_d * self.cost_ema + (1.0 - self.alpha_d) * cost
        derivative = max(0.0, self.cost_ema - self.cost_emas[0])
        self.cost_emas.append(self.cost_ema)
        return self._project(self.kp * self.error_ema + self.integral + self.kd * derivative)

    def state_dict(self) -> dict[str, Any]:
        """Integral, EMAs and the delay queue of cost EMAs, as floats and a list of floats."""
        return {
            "integral": self.integral,
            "error_ema": self.error_ema,
            "cost_ema": self.cost_ema,
            "cost_emas": list(self.cost_emas),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict`` (for instance one read back from a saved model)."""
        self.integral = float(state["integral"])
        self.error_ema = float(state["error_ema"])
        self.cost_ema = float(state["cost_ema"])
        self.cost_emas = deque((float(v) for v in state["cost_emas"]), maxlen=self.delay)
