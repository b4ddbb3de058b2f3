"""Named presets (the ablations of Table III) and device profiles, typed.

A preset replaces the method switches; a profile is a set of overrides for a kind of machine,
checked against the settings' types when this module is imported, so a typo in a profile fails at
once instead of when a CPU run starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from align4d_core.config.schema import MethodConfig

PRESETS: dict[str, MethodConfig] = {
    "align4d": MethodConfig(),
    "no-oda": MethodConfig(oda=False),
    "no-mgja": MethodConfig(mgja=False),
    "no-ao": MethodConfig(ao=False),
}
"""The full method and the ablations of Table III, by name (nerfstudio-style presets)."""


@dataclass(frozen=True)
class Profile:
    """Overrides of the defaults for a kind of machine, and why."""

    name: str
    overrides: dict
    why: str

    def __post_init__(self) -> None:
        from align4d_core.config.loading import check_overrides

        check_overrides(self.overrides, what=f"profile {self.name!r}")


CPU = Profile(
    name="cpu",
    overrides={
        "optimize": {
            "steps": 120,
            "frames_per_step": 2,
            "densify_interval": 80,
            "resolution_schedule": [[1.0, 64]],
            "grid_lr": 0.016,
            "deformation_lr": 0.0016,
            "checkpoint_every": 50,
        },
        "mgja": {"views": 2},
        "mesh_samples": 4096,
        "metrics": {"size": None},
    },
    why="""What changes on a CPU, where the paper's schedule (500 steps, every frame, renders up to 512 px)
would take hours: 120 steps of 2 frames with 2 unknown views each, four whole AO cycles, one
densification (step 80, inside the first 75% of the steps), unknown views at 64 px (the bundled
prior's input size: a larger render is only downsampled for it), so that `align4d run` does the
five sample items with the learned prior under 10 minutes on 2 cores (0.4 s a step before
densification against 2.0 s with 4 frames, 4 views and 128 px; 150 steps took 11 min); the
deformation's learning rates ×2.5 to make up for the fewer steps, and meshes sampled with 4096 Gaussians (16384 would be
several per pixel at 128 px). Eval views are scored at their own size (the sample's 128 px) rather
than upsampled to 512 px: upsampling adds no detail, and LPIPS at 512 px costs about 1.5 s per frame
pair on 2 cores (benchmarks/metrics.py). The method is the same; docs/method.md gives the
measurements behind it.""",
)
PAPER = Profile(name="paper", overrides={}, why="The paper's schedule (Section IV-A, DreamGaussian4D): no overrides.")
PROFILES: dict[str, Profile] = {p.name: p for p in (PAPER, CPU)}

CPU_PROFILE: dict = CPU.overrides
"""The CPU profile's overrides (what a config file would write to get them)."""


def profile_for(device_type: str, profile: str = "auto") -> dict:
    """Overrides of the named profile: "paper" (none), "cpu", or "auto" (cpu unless on CUDA)."""
    if profile not in ("auto", *PROFILES):
        raise ValueError(f"unknown profile {profile!r}; expected 'auto', 'paper' or 'cpu'")
    if profile == "auto":
        profile = "paper" if device_type == "cuda" else "cpu"
    return PROFILES[profile].overrides
