"""What every exercise check shares: a pass message, and a failure that teaches."""
from __future__ import annotations


class ExerciseError(AssertionError):
    """An exercise answer is wrong; the message says what was expected and gives a hint."""


def passed(what: str) -> bool:
    print(f"✓ {what}: correct")
    return True


def fail(what: str, problem: str, hint: str = "") -> None:
    msg = f"✗ {what}: {problem}"
    if hint:
        msg += f"\n  Hint: {hint}"
    raise ExerciseError(msg)
