"""course_lib: the tested library that the course notebooks build up to."""
from .config import get_device, profile, seed_everything, setup  # noqa: F401

__version__ = "0.1.0"
