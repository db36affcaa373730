"""Self-checks for the notebook exercises. Each ``check_*`` prints a ✓ or raises
:class:`ExerciseError` with a hint. One module per area; they are all re-exported here."""
from ._core import ExerciseError, ExerciseNotDone, fail, passed  # noqa: F401
from .foundation import *  # noqa: F401,F403
from .diffusion import *  # noqa: F401,F403
from .unet import *  # noqa: F401,F403
from .scoring import *  # noqa: F401,F403
from .better_scores import *  # noqa: F401,F403
from .dit import *  # noqa: F401,F403
from .benchmark import *  # noqa: F401,F403
from .robustness import *  # noqa: F401,F403
