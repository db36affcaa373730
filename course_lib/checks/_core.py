"""What every exercise check shares: a pass message, and a failure that teaches."""
from __future__ import annotations

from typing import Callable


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


def call_learner(fn: Callable, what: str, *args):
    """Call the learner's function; an exception becomes an ExerciseError that keeps the traceback."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 -- any error in the learner's code is reported as such
        fail(what, f"your function raised {type(err).__name__}: {err}",
             "Read the traceback above (the 'During handling' part) and fix the line it names.")
