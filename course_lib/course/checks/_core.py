"""What every exercise check shares: a pass message, and a failure that teaches."""
from __future__ import annotations

from typing import Callable


class ExerciseError(AssertionError):
    """An exercise answer is wrong; the message says what was expected and gives a hint."""


class ExerciseNotDone(ExerciseError):
    """The exercise's stub still raises NotImplementedError. Notebooks show only its message (see
    ``course_lib.course.exercises.quiet_not_done``): there is no bug to trace."""


def passed(what: str) -> bool:
    print(f"✓ {what}: correct")
    return True


def fail(what: str, problem: str, hint: str = "") -> None:
    msg = f"✗ {what}: {problem}"
    if hint:
        msg += f"\n  Hint: {hint}"
    raise ExerciseError(msg)


def not_done(what: str, fn: Callable, err: NotImplementedError) -> None:
    """The learner has not filled in the exercise yet: say so, and where the solution is."""
    name = getattr(fn, "__name__", "the function")
    raise ExerciseNotDone(
        f"✗ {what}: the exercise is not done yet ({name} raises NotImplementedError"
        f"{': ' + str(err) if str(err) else ''}).\n"
        f"  Replace the `raise NotImplementedError` line of the cell above with your code. To see a solution, run "
        f"`from course_lib.course import solutions; solutions.show({name!r})`. To let the notebook run on with the "
        f"reference solutions, run `%env COURSE_SOLUTIONS=1` and run this cell again.") from None


def call_learner(fn: Callable, what: str, *args):
    """Call the learner's function; an exception becomes an ExerciseError that keeps the traceback."""
    try:
        return fn(*args)
    except NotImplementedError as err:
        not_done(what, fn, err)
    except Exception as err:  # noqa: BLE001 -- any error in the learner's code is reported as such
        fail(what, f"your function raised {type(err).__name__}: {err}",
             "Read the traceback above (the 'During handling' part) and fix the line it names.")
