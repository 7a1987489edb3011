"""Errors that describe bad user input, and failed solves of valid input.

The CLI prints a :class:`UserError` (exit 2) or a :class:`SolverFailure` (exit 1) as one line; any
other exception is a bug and keeps its traceback.
"""
import difflib
import math
from typing import Any, Iterable


class UserError(ValueError):
    """Bad input from a user: the message names the bad value and what is allowed."""


class TrainingFailure(RuntimeError):
    """Training on valid input stopped: its loss became NaN or infinite. The message names the epoch
    and what to try; the checkpoints keep the last finite epoch."""


class SolverFailure(RuntimeError):
    """A classical solve of valid input failed: the state blew up (NaN/inf, a Courant or speed limit)
    or needed more steps than allowed. Solvers raise subclasses; the PDE modules re-raise with the
    instance's index and parameters, so a user can see which draw of a level the setting cannot solve."""


def check_choice(kind: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a :class:`UserError` that lists them."""
    allowed = sorted(allowed)
    if value not in allowed:
        raise UserError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")
    return value


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` if it is a finite positive number (or zero when allowed), else raise a
    :class:`UserError` naming ``name``: an infinite viscosity or learning rate passes ``> 0`` and only
    fails later as NaN; a string or ``None`` would raise a bare ``TypeError``."""
    try:
        finite = math.isfinite(value) and not isinstance(value, bool)
    except TypeError:
        finite = False
    if not (finite and (value >= 0 if allow_zero else value > 0)):
        bound = "non-negative" if allow_zero else "positive"
        raise UserError(f"{name} must be {bound}{'' if finite else ' and finite'}, got {value!r}")
    return value


def did_you_mean(key: str, allowed: Iterable[Any]) -> str:
    """``" (did you mean 'x'?)"`` for the allowed name closest to a misspelt ``key``, or ``""``."""
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_integer(name: str, value: Any, minimum: int = 1, *, even: bool = False) -> int:
    """``value`` as an ``int`` if it is a whole number ``>= minimum`` (and even, if ``even``), else a
    :class:`UserError` naming ``name``: ``32.0`` is taken, ``32.5``, ``True`` and ``"32"`` are not
    (``int()`` would truncate or convert them silently)."""
    try:
        n = int(value)
        whole = n == value and not isinstance(value, bool)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or n < minimum or (even and n % 2):
        raise UserError(f"{name} must be an {'even ' if even else ''}integer >= {minimum}, got {value!r}")
    return n
