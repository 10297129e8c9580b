"""Lagrange multiplier update rules: projected SGD and PID (Stooke et al., 2020).

A rule updates one resource's multiplier from the mean episode cost ``Jc`` and its limit
``d``. Its state is plain numbers (``state_dict``), so it can be saved as JSON in SB3's zip
and restored with ``load_state_dict``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from typing import Any


def check_number(value: Any, name: str, low: float = 0.0, high: float = math.inf) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a finite number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number in [{low}, {high}]")
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} must lie in [{low}, {high}]")
    return float(value)


class LagrangeRule(ABC):
    """One resource's multiplier update, called once per ``train()`` with the window's mean cost."""

    def __init__(self, max_value: float) -> None:
        self.max_value = check_number(max_value, "lagrange_max")

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
        self.lr = check_number(lr, "lagrange_lr")

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
        self.kp = check_number(kp, "pid_kp")
        self.ki = check_number(ki, "pid_ki")
        self.kd = check_number(kd, "pid_kd")
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise ValueError(f"pid_delay={delay!r} must be an int >= 1 (updates)")
        self.delay = delay
        self.alpha_p = check_number(alpha_p, "pid_alpha_p", high=1.0)
        self.alpha_d = check_number(alpha_d, "pid_alpha_d", high=1.0)
        self.integral = check_number(init, "lagrange_init", high=self.max_value)
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
