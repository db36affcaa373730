"""Exercise stubs that a learner completes, and the switch that lets a notebook run on without them.

In a notebook an exercise is a function whose body the learner writes::

    @exercise
    def q_sample_closed_form(x0, abar_t, eps):
        raise NotImplementedError("x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps")

    checks.check_q_sample(q_sample_closed_form)

While the body still raises ``NotImplementedError``, the check says that the exercise is not done and
where the solution is. With ``COURSE_SOLUTIONS=1`` in the environment (CI and ``make execute`` set it;
a learner can run ``%env COURSE_SOLUTIONS=1``) the stub calls the reference solution of the same name
from :mod:`course_lib.course.solutions` instead, says so once, and the rest of the notebook runs.
A learner's own code is never replaced: only a stub that raises ``NotImplementedError`` is.
"""
from __future__ import annotations

import functools
import os
from typing import Callable

SOLUTIONS_ENV = "COURSE_SOLUTIONS"


def solutions_enabled() -> bool:
    """True when ``COURSE_SOLUTIONS`` is 1 (or true/yes): unfinished stubs then run the reference solution."""
    value = os.environ.get(SOLUTIONS_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{SOLUTIONS_ENV}={os.environ[SOLUTIONS_ENV]!r} is not understood; set it to 1 to run the "
                     f"reference solutions of unfinished exercises, or to 0 (or unset it) to run your own.")


def exercise(fn: Callable) -> Callable:
    """Mark ``fn`` as an exercise stub; the reference solution of the same name must exist."""
    from course_lib.course import solutions
    reference = getattr(solutions, fn.__name__, None)
    if reference is None or fn.__name__.startswith("_"):
        raise NameError(f"course_lib.course.solutions has no reference solution named {fn.__name__!r}; an exercise "
                        f"keeps the name of its solution (one of: {', '.join(solutions.NAMES)}).")
    told = False

    @functools.wraps(fn)
    def stub(*args, **kwargs):
        nonlocal told
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            if not solutions_enabled():
                raise
            if not told:
                print(f"ⓘ {fn.__name__} is not filled in: running the reference solution ({SOLUTIONS_ENV}=1; "
                      f"see it with solutions.show({fn.__name__!r}))")
                told = True
            return reference(*args, **kwargs)

    stub.reference = reference
    return stub


def quiet_not_done() -> None:
    """In IPython, show an unfinished exercise's message without a traceback (there is no bug to trace).
    Other errors, wrong answers included, keep their traceback. Does nothing outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to configure
        return
    shell = get_ipython()
    if shell is None:
        return
    from course_lib.course.checks import ExerciseNotDone

    def show_message(shell, etype, value, tb, tb_offset=None):
        shell._showtraceback(etype, value, [str(value)])
        return [str(value)]

    shell.set_custom_exc((ExerciseNotDone,), show_message)
