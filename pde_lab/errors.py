"""Errors that describe bad user input.

The CLI prints a :class:`UserError` as one line and exits non-zero; any other exception is a bug and
keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from a user: the message names the bad value and what is allowed."""


def check_choice(kind: str, value: str, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a :class:`UserError` that lists them."""
    allowed = sorted(allowed)
    if value not in allowed:
        raise UserError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")
    return value


def check_positive(name: str, value, *, allow_zero: bool = False):
    """Return ``value`` if it is a positive number (or zero when allowed), else raise a :class:`UserError`."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = "non-negative" if allow_zero else "positive"
        raise UserError(f"{name} must be {bound}, got {value!r}")
    return value
