"""course_lib: the tested library that the course notebooks build up to.

The main classes are importable from here::

    from course_lib import DiffusionDetector, load_task, make_baseline
    task = load_task("textures", "grass")
    det = DiffusionDetector("noise", extent=task.extent).fit(task.train)
    det.decision_function(task.images)
"""
from .config import get_device, profile, seed_everything  # noqa: F401
from .baselines import PixelBaseline, make_baseline  # noqa: F401
from .data import AnomalyTask, load_task  # noqa: F401
from .detector import Detector  # noqa: F401
from .diffusion_detector import DiffusionDetector  # noqa: F401
from .nets import make_denoiser  # noqa: F401
from .scoring import ScoreConfig  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name: str):
    # course_lib.setup(), every notebook's first call, is course support (it hooks the exercises into
    # IPython): loaded when first asked for, so that importing the library never imports the course
    if name == "setup":
        from .course.setup import setup
        return setup
    raise AttributeError(f"module 'course_lib' has no attribute {name!r}")
