"""Optimisation of the 4D object: MGJA's losses under asynchronous optimisation (Section III-C/D).

Each step samples video frames, deforms the canonical Gaussians to them, renders the known front
view at VAOD (KSVA, eq. 6) and N random unknown views (USVA, eq. 7-9), and updates either the
deformation field or the Gaussians (AO: they alternate in blocks of ``ao_blocks`` steps, motion
first and longer, because the 3D input already gives good geometry) or both (JO, the ablation).

Every random choice of step s comes from a generator seeded by (seed, s): a run resumed from a
checkpoint draws exactly what the uninterrupted run drew, so it ends with the same result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from align4d_core.config import RunConfig
from align4d_core.errors import InputError
from align4d_core.guidance.base import Guidance
from align4d_core.io.hashing import hash_json
from align4d_core.method import checkpoint
from align4d_core.method.densify import DensifyStrategy
from align4d_core.method.mgja import UnknownViews, mgja_loss, random_views
from align4d_core.method.trainable import TrainableGaussians, position_lr
from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.deformation import DeformationField, deform
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import render

DENSIFY_MODES = ("adaptive", "none")
"""``optimize.densify``: Section IV-A's adaptive density control, or none (DreamGaussian4D's effective
behaviour: its density_start_iter of 3000 is never reached in 500 steps)."""

ProgressCallback = Callable[[int, int, dict], None]
"""``progress(step, steps, record)`` after every step; ``record`` holds the step's losses."""


class OptimizationDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclass
class Pair:
    """A video-3D pair, ready for the optimiser."""

    frames: Tensor  # (T, H, W, 3) on white
    masks: Tensor | None  # (T, H, W, 1)
    gaussians: Gaussians  # the 3D input ψ
    fovy_deg: float

    def validate(self) -> Pair:
        if self.frames.dim() != 4 or self.frames.shape[-1] != 3:
            raise InputError(f"video frames must be (T, H, W, 3), got {tuple(self.frames.shape)}", field="video")
        if self.frames.shape[0] < 2:
            raise InputError(f"the video has {self.frames.shape[0]} frame; motion needs at least 2", field="video")
        if self.masks is not None and self.masks.shape[:3] != self.frames.shape[:3]:
            raise InputError(
                f"masks {tuple(self.masks.shape[:3])} do not match the video {tuple(self.frames.shape[:3])}",
                field="masks",
            )
        if len(self.gaussians) == 0:
            raise InputError("the 3D input has no Gaussians", field="object")
        self.gaussians.validate("object")
        return self


@dataclass
class OptimizeResult:
    gaussians: Gaussians  # canonical, detached
    field: DeformationField
    history: list[dict] = field(default_factory=list)  # one record per step
    densify: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None


def resize_to(images: Tensor, size: int | None) -> Tensor:
    """(T, H, W, C) resized so that the longer side is ``size`` (None: unchanged)."""
    if size is None or max(images.shape[1:3]) == size:
        return images
    scale = size / max(images.shape[1:3])
    hw = (max(1, round(images.shape[1] * scale)), max(1, round(images.shape[2] * scale)))
    out = F.interpolate(images.permute(0, 3, 1, 2), size=hw, mode="bilinear", antialias=True, align_corners=False)
    return out.permute(0, 2, 3, 1).clamp(0, 1).contiguous()


def phase_of(step: int, config: RunConfig) -> str:
    """ "joint" (JO), or for AO "deformation" / "gaussians" in alternating blocks, motion first."""
    if not config.method.ao:
        return "joint"
    motion, geometry = config.optimize.ao_blocks
    return "deformation" if (step - 1) % (motion + geometry) < motion else "gaussians"


def resolution_of(step: int, steps: int, config: RunConfig) -> int:
    """Render size of the unknown views at ``step`` (DG4D: 128, then 256, then 512)."""
    progress = step / max(steps, 1)
    for until, size in config.optimize.resolution_schedule:
        if progress <= until:
            return size
    return config.optimize.resolution_schedule[-1][1]


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def sample_frames(n_frames: int, per_step: int | None, generator: torch.Generator) -> Tensor:
    """Frames of this step, sorted: every frame, or ``per_step`` of them drawn without repeat."""
    if per_step is None or per_step >= n_frames:
        return torch.arange(n_frames)
    return torch.randperm(n_frames, generator=generator)[:per_step].sort().values


class _Run:
    """The state of one optimisation: parameters, optimisers, statistics, history."""

    def __init__(self, pair: Pair, config: RunConfig, guidance: Guidance) -> None:
        self.pair, self.config, self.guidance = pair, config, guidance
        self.n_frames = pair.frames.shape[0]
        self.params = TrainableGaussians(pair.gaussians, config.optimize)
        with torch.random.fork_rng(devices=[]):  # the field's random init follows the run's seed alone
            torch.manual_seed(config.optimize.seed)
            self.field = DeformationField.from_gaussians(pair.gaussians, self.n_frames, config.deformation)
        opt = config.optimize
        self.field_optimizer = torch.optim.Adam(
            [
                {"params": list(self.field.grid_parameters()), "lr": opt.grid_lr},
                {"params": list(self.field.mlp_parameters()), "lr": opt.deformation_lr},
            ],
            eps=1e-15,
        )
        self.densifier = DensifyStrategy(len(self.params), pair.gaussians.extent()[1], opt)
        self.history: list[dict] = []
        self.config_hash = hash_json(config)

    # --- checkpoints ---------------------------------------------------------------------------
    def tensors(self) -> dict[str, Tensor]:
        out = self.params.state_tensors()
        out.update({f"field.{k}": v for k, v in self.field.state_dict().items()})
        for index, state in self.field_optimizer.state_dict()["state"].items():
            for key, value in state.items():
                out[f"field_adam.{index}.{key}"] = torch.as_tensor(value).reshape(-1)
        out["densify.grad_sum"], out["densify.count"] = self.densifier.grad_sum, self.densifier.count
        return out

    def save(self, folder: str, step: int) -> None:
        meta = {"config_hash": self.config_hash, "history": self.history, "densify": self.densifier.history}
        checkpoint.save_checkpoint(folder, step, self.tensors(), meta)

    def restore(self, folder: str) -> int | None:
        latest = checkpoint.load_latest(folder)
        if latest is None:
            return None
        step, tensors, meta = latest
        if meta.get("config_hash") != self.config_hash:
            raise InputError(
                "the checkpoint was made with another configuration; use a new output "
                "folder or the same configuration to resume",
                uri=folder,
            )
        self.params.load_state_tensors(tensors)
        self.field.load_state_dict({k[len("field.") :]: v for k, v in tensors.items() if k.startswith("field.")})
        state = self.field_optimizer.state_dict()
        indices = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("field_adam.")})
        state["state"] = {
            i: {
                "step": tensors[f"field_adam.{i}.step"].reshape(()),
                "exp_avg": tensors[f"field_adam.{i}.exp_avg"].reshape(p.shape),
                "exp_avg_sq": tensors[f"field_adam.{i}.exp_avg_sq"].reshape(p.shape),
            }
            for i, p in zip(indices, [p for g in self.field_optimizer.param_groups for p in g["params"]])
        }
        self.field_optimizer.load_state_dict(state)
        self.densifier.grad_sum, self.densifier.count = tensors["densify.grad_sum"], tensors["densify.count"]
        self.densifier.history = list(meta.get("densify", []))
        self.history = list(meta.get("history", []))
        return step


def optimize(
    pair: Pair,
    vaod: float,
    maod: float,
    config: RunConfig,
    guidance: Guidance,
    *,
    checkpoints: str | None = None,
    progress: ProgressCallback | None = None,
) -> OptimizeResult:
    """Fit the 4D object to ``pair`` at the given distances; resumes from ``checkpoints`` if any.

    ``vaod`` is where the known view is rendered (eq. 6, 7), ``maod`` where L_geo's views are
    (eq. 8); under ``method.oda = False`` the caller passes the fixed distance for both.
    """
    pair.validate()
    started = time.perf_counter()
    frames = resize_to(pair.frames, config.mgja.reference_size)
    masks = resize_to(pair.masks, config.mgja.reference_size) if pair.masks is not None else None
    guidance.set_frames(frames)
    run = _Run(pair, config, guidance)
    first = 1
    resumed = run.restore(checkpoints) if checkpoints is not None else None
    if resumed is not None:
        first = resumed + 1
    steps = config.optimize.steps
    for step in range(first, steps + 1):
        record = _train_step(run, step, frames, masks, vaod, maod)
        run.history.append(record)
        if progress is not None:
            progress(step, steps, record)
        if checkpoints is not None and (step % config.optimize.checkpoint_every == 0 or step == steps):
            run.save(checkpoints, step)
    return OptimizeResult(
        gaussians=run.params.gaussians().detach(),
        field=run.field.eval(),
        history=run.history,
        densify=run.densifier.history,
        seconds=time.perf_counter() - started,
        resumed_from=resumed,
    )


def _train_step(run: _Run, step: int, frames: Tensor, masks: Tensor | None, vaod: float, maod: float) -> dict:
    config, opt = run.config, run.config.optimize
    generator = step_generator(opt.seed, step)
    phase = phase_of(step, config)
    train_gaussians, train_field = phase in ("joint", "gaussians"), phase in ("joint", "deformation")
    run.params.set_requires_grad(train_gaussians)
    run.field.requires_grad_(train_field)
    run.params.set_position_lr(position_lr(step, opt.steps, opt))

    index = sample_frames(run.n_frames, opt.frames_per_step, generator)
    deformed = deform(run.params.gaussians(), run.field, index, run.n_frames)
    height, width = frames.shape[1:3]
    front = orbit_cameras(0.0, 0.0, [vaod] * len(index), width=width, height=height, fovy_deg=run.pair.fovy_deg)
    known = render(deformed, front)
    ramp = step / opt.steps if config.mgja.ramp_known_view else 1.0
    screens = [(known.means2d, width, height)]
    unknown = None
    if config.method.mgja:
        unknown, unknown_screens = _unknown_views(run, deformed, index, step, vaod, maod, generator)
        screens.extend(unknown_screens)
    loss, parts = mgja_loss(
        run.guidance,
        known.rgb,
        known.alpha,
        frames[index],
        None if masks is None else masks[index],
        unknown,
        run.n_frames,
        config.mgja,
        generator,
        ramp=ramp,
        step_ratio=min(1.0, step / opt.steps),
    )
    if not bool(torch.isfinite(loss)):
        raise OptimizationDiverged(
            f"step {step}: the loss is {float(loss)} ({', '.join(f'{k} {v:.4g}' for k, v in parts.items())}); "
            "the last good checkpoint is kept"
        )
    for means2d, _, _ in screens:
        means2d.retain_grad()
    loss.backward()
    for means2d, w, h in screens:
        run.densifier.accumulate(means2d, w, h)
    if train_gaussians:
        run.params.optimizer.step()
    if train_field:
        run.field_optimizer.step()
    run.params.optimizer.zero_grad(set_to_none=True)
    run.field_optimizer.zero_grad(set_to_none=True)
    _check_finite(run, step)

    record = {"step": step, "phase": phase, "loss": float(loss.detach()), **parts}
    if opt.densify not in DENSIFY_MODES:
        raise ValueError(f"unknown optimize.densify {opt.densify!r}; choose one of {', '.join(DENSIFY_MODES)}")
    due = step % opt.densify_interval == 0 and step <= opt.densify_until * opt.steps
    if opt.densify == "adaptive" and due:
        record["densify"] = run.densifier.step(run.params, generator)
    record["gaussians"] = len(run.params)
    return record


def _check_finite(run: _Run, step: int) -> None:
    """Parameters that overflowed render as nothing, so the loss alone would not always notice."""
    tensors = {
        **{f"gaussians.{k}": p for k, p in run.params.params.items()},
        **{f"field.{k}": p for k, p in run.field.named_parameters()},
    }
    bad = [name for name, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise OptimizationDiverged(
            f"step {step}: non-finite parameters after the update ({', '.join(bad)}); the last good checkpoint is kept"
        )


def _unknown_views(
    run: _Run, deformed: Gaussians, index: Tensor, step: int, vaod: float, maod: float, generator: torch.Generator
) -> tuple[UnknownViews, list[tuple[Tensor, int, int]]]:
    """The renders USVA scores at N random views per sampled frame: L_mot's at VAOD, L_geo's and the
    3D input's at MAOD; and the screen-space means of the 4D object's renders, for densification."""
    config = run.config
    views = random_views(index, config.mgja, generator)
    size = resolution_of(step, config.optimize.steps, config)
    per_view = deformed.map(lambda t: t.repeat_interleave(config.mgja.views, dim=0))
    fovy = run.pair.fovy_deg

    def cameras(distance: float):
        return orbit_cameras(views.elevation, views.azimuth, distance, width=size, fovy_deg=fovy)

    geometry = render(per_view, cameras(maod))
    screens = [(geometry.means2d, size, size)]
    motion = None
    if run.guidance.name != "anchor":  # the anchor has no motion prior: L_mot is off
        motion = geometry if abs(maod - vaod) < 1e-9 else render(per_view, cameras(vaod))
        if motion is not geometry:  # L_mot's own renders pull the Gaussians too: densification sees them
            screens.append((motion.means2d, size, size))
    with torch.no_grad():
        references = render(run.pair.gaussians, cameras(maod)).rgb
    return UnknownViews(views, None if motion is None else motion.rgb, geometry.rgb, references), screens
