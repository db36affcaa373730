"""Self-checks for the notebook exercises. Each ``check_*`` prints a ✓ or raises
:class:`ExerciseError` with a hint. One module per area; they are all re-exported here."""
from course_lib.course.checks._core import ExerciseError, ExerciseNotDone, fail, passed  # noqa: F401
from course_lib.course.checks.foundation import *  # noqa: F401,F403
from course_lib.course.checks.diffusion import *  # noqa: F401,F403
from course_lib.course.checks.unet import *  # noqa: F401,F403
from course_lib.course.checks.scoring import *  # noqa: F401,F403
from course_lib.course.checks.better_scores import *  # noqa: F401,F403
from course_lib.course.checks.dit import *  # noqa: F401,F403
from course_lib.course.checks.benchmark import *  # noqa: F401,F403
from course_lib.course.checks.robustness import *  # noqa: F401,F403
