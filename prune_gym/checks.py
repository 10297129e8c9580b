"""Argument checks shared by every module: one message style, numpy scalars accepted.

Each check returns the value as a plain Python ``int``/``float``/``str`` or raises
``ValueError`` (``TypeError`` for a value of the wrong kind) naming the argument, the
value and what is accepted. ``bool`` is never taken for a number, although Python
treats it as one; numpy scalars (``np.float32(0.5)``, ``np.int64(3)``) are.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any

import torch


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (either bound may be ``None``)."""
    if not is_integer(value):
        raise ValueError(f"{name}={value!r} must be an integer{_range_text(low, high)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name}={value!r} must be an integer{_range_text(low, high)}")
    return value


def check_number(
    value: Any,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` in the interval from ``low`` to ``high``.

    ``low_open`` / ``high_open`` exclude the bound itself, e.g. a budget lies in (0, 1].
    """
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if not is_real(value) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number in {interval}")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        raise ValueError(f"{name}={value!r} is outside {interval}")
    return value


def check_fraction(value: Any, name: str) -> float:
    """A finite number in [0, 1] (a ratio, a sparsity, a density), as ``float``."""
    return check_number(value, name, 0.0, 1.0)


def check_choice(value: Any, name: str, accepted: Iterable[Any]) -> Any:
    """``value`` if it is one of ``accepted``, else a ``ValueError`` listing them."""
    accepted = tuple(accepted)
    if value not in accepted:
        raise ValueError(
            f"{name}={value!r} is not supported; expected one of {accepted}"
            + did_you_mean(value, accepted)
        )
    return value


def did_you_mean(value: Any, known: Iterable[Any]) -> str:
    """``" Did you mean 'x'?"`` for the closest known name to a string ``value``, else ``""``."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(k) for k in known], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _range_text(low: int | None, high: int | None) -> str:
    """`` >= low``, `` <= high`` or `` in [low, high]`` for messages."""
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def check_device(value: Any, name: str = "device") -> str:
    """``value`` as the text of a torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...)."""
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r} must be a str such as 'cpu' or 'cuda'")
    try:
        torch.device(value)
    except RuntimeError as error:
        raise ValueError(f"{name}={value!r} is not a torch device ({error})") from error
    return value


def check_device_available(value: Any, name: str = "device") -> str:
    """``check_device``, and a device this machine can compute on.

    ``"cpu"`` always can; any other device (``"cuda"``, ``"cuda:1"``, ``"mps"``, ...)
    is tried with a one-element tensor, so a missing GPU is reported here, in one
    line, rather than by torch once a model has been built.
    """
    value = check_device(value, name)
    if torch.device(value).type == "cpu":
        return value
    try:
        torch.ones(1, device=value).cpu()
    except (RuntimeError, AssertionError) as error:  # no driver / a build without the backend
        gpus = [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        reason = str(error).strip().splitlines()[0]
        raise ValueError(
            f"{name}={value!r} cannot be used on this machine ({reason}); available: "
            f"{['cpu', *gpus]}"
        ) from error
    return value


def check_unique(values: Iterable[Any], name: str) -> tuple[Any, ...]:
    """``values`` as a tuple, or a ``ValueError`` naming the entries given more than once."""
    values = tuple(values)
    repeated = list(dict.fromkeys(v for i, v in enumerate(values) if v in values[:i]))
    if repeated:
        raise ValueError(
            f"{name}={list(values)!r} names {repeated} more than once; give each entry once"
        )
    return values
