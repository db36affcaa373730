"""The benchmark's methods: one record per method name, from which every list of methods is derived."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from course_lib import config
from course_lib.baselines import ALL_BASELINES, PixelBaseline, make_baseline
from course_lib.detector import Detector
from course_lib.diffusion_detector import DENOISER_LABELS, DiffusionDetector
from course_lib.scoring import ScoreConfig

# factory(profile, seed, extent) -> an unfitted Detector. `extent` is the task's AnomalyTask.extent
# ("global" or "local"): the only thing about a task that a detector may know before it is fitted.
Factory = Callable[[config.Profile, int, str], Detector]


@dataclass(frozen=True)
class Method:
    """A method of the benchmark: how to build its detector, and what it is."""

    name: str               # the method's name in the tables: "iforest", "ddpm-unet/noise", ...
    make: Factory           # builds the unfitted detector
    detector: type          # the Detector class it builds; its `kind` says "pixels" or "diffusion"

    @property
    def kind(self) -> str:
        return self.detector.kind

    @property
    def family(self) -> str:
        """The methods that share a trained model: "baselines" (none), or the denoiser ("ddpm-unet", "dit")."""
        return "baselines" if self.kind == "pixels" else self.name.split("/")[0]


METHODS: dict[str, Method] = {}


def register_method(name: str, make: Factory, detector: type) -> None:
    METHODS[name] = Method(name, make, detector)


def _diffusion_method(denoiser: str, score: str) -> Factory:
    """A diffusion detector with the profile's U-Net ("unet") or DiT ("dit") and its settings of `score`."""
    def make(prof: config.Profile, seed: int, extent: str) -> Detector:
        preset = prof.unet_preset if denoiser == "unet" else prof.dit_preset
        return DiffusionDetector(ScoreConfig.for_task(prof, score, extent), preset=preset, prof=prof, seed=seed,
                                 progress=True,   # the training bar shows life inside a long cell
                                 threshold_split=0)   # AUROC needs no threshold: every image trains
    return make


for _name in ALL_BASELINES:
    register_method(_name, lambda prof, seed, extent, _n=_name: make_baseline(_n, seed=seed, threshold_split=0),
                    PixelBaseline)
for _denoiser, _label in DENOISER_LABELS.items():
    register_method(f"{_label}/recon", _diffusion_method(_denoiser, "reconstruction"), DiffusionDetector)
    register_method(f"{_label}/noise", _diffusion_method(_denoiser, "noise"), DiffusionDetector)


def of_kind(kind: str) -> list[str]:
    """The names of the registered methods of one kind ("pixels" or "diffusion")."""
    return [m.name for m in METHODS.values() if m.kind == kind]


def check_methods(names) -> None:
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; valid methods: {', '.join(METHODS)}.")
