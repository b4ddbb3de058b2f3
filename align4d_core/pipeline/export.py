"""Write a generated 4D object as the folder every consumer of align4d reads (DESIGN.md §9)::

    object/canonical.ply                 the canonical Gaussians (standard 3DGS layout)
    object/deformation.safetensors       the deformation field (see align4d_core.scene.deformation)
    object/frames/<t>.ply                the deformed Gaussians of frame t = 0..T-1
    object/canonical.splat, frames/<t>.splat   the same in the compact web .splat layout (io/splat.py)
    object/animated.glb                  a mesh input moved by the field: glTF morph targets (render stage)
    videos/turntable.mp4                 a 360° orbit while the object animates
    videos/front_vs_input.mp4            input frame | front render, side by side
    eval/eval_<k>/<t>.png                Consistent4D test views (what `align4d evaluate --pred` reads)
    viewer.html                          the interactive 4D viewer, one self-contained page (pipeline/viewer.py)

Per-frame ``.ply`` and ``.splat`` files let a splat viewer (or a user without align4d) play the
motion without the field. Cameras follow DESIGN.md §4: the front view is azimuth 0, elevation 0, at the distance the
object was fitted at (VAOD, or the fixed distance under ``oda=False``). The turntable and the front
render use the input video's image size and field of view, so that the turntable's first view is the
input camera's; the evaluation views use ``eval_size`` (§7).

Every render is batched (one deformed Gaussian set per camera, ``batch`` cameras per call) and runs
without autograd; every file goes through storage, so each one is atomic. ``done.json`` and
``search.json`` belong to the stage that calls :func:`export_object`, not to this module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from align4d_core.config import EVAL_AZIMUTHS, ExportConfig
from align4d_core.io import storage
from align4d_core.io.media import write_frames, write_video
from align4d_core.io.ply import write_gaussians_ply
from align4d_core.io.splat import write_splat
from align4d_core.pipeline.viewer import VIEWER, write_viewer
from align4d_core.scene.cameras import FOVY_DEG, orbit_cameras
from align4d_core.scene.deformation import DeformationField, deform, save_deformation
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import render

__all__ = [
    "ARTIFACTS",
    "DEFAULT_EVAL_SIZE",
    "ProgressCallback",
    "export_object",
    "render_views",
    "write_eval_views",
    "write_frame_plys",
    "write_front_vs_input",
    "write_turntable",
]

ProgressCallback = Callable[[str, int, int], None]
"""``progress(step_name, steps_done, steps_total)``, called after each artifact is written."""

ARTIFACTS = {
    "canonical": "object/canonical.ply",
    "canonical_splat": "object/canonical.splat",
    "deformation": "object/deformation.safetensors",
    "frames": "object/frames",
    "turntable": "videos/turntable.mp4",
    "front_vs_input": "videos/front_vs_input.mp4",
    "eval": "eval",
    "viewer": VIEWER,
}
"""Artifact name -> path inside the object folder (DESIGN.md §9)."""

DEFAULT_EVAL_SIZE = 512
"""Evaluation view size when neither the config nor the ground truth gives one (DESIGN.md §7)."""

DEFAULT_BATCH = 8  # cameras per render call: bounded memory on CPU, a full batch on a GPU

FRONT_AZIMUTH = 0.0
EVAL_ELEVATION = 0.0


@torch.no_grad()
def render_views(
    canonical: Gaussians,
    field: DeformationField,
    n_frames: int,
    frame_index: Tensor,
    elevations: float | list[float] | Tensor,
    azimuths: float | list[float] | Tensor,
    distance: float,
    *,
    width: int,
    height: int | None = None,
    fovy_deg: float = FOVY_DEG,
    batch: int = DEFAULT_BATCH,
) -> Tensor:
    """RGB on white ``(V, H, W, 3)`` on the CPU: view v shows frame ``frame_index[v]`` from its orbit camera.

    Views are deformed and rendered ``batch`` at a time, so memory does not grow with V.
    """
    frame_index = torch.as_tensor(frame_index).reshape(-1)
    count = frame_index.shape[0]
    elevations = torch.as_tensor(elevations, dtype=torch.float64).expand(count)
    azimuths = torch.as_tensor(azimuths, dtype=torch.float64).expand(count)
    chunks = []
    for start in range(0, count, batch):
        part = slice(start, start + batch)
        frames = deform(canonical, field, frame_index[part], n_frames)
        cameras = orbit_cameras(
            elevations[part], azimuths[part], distance, width=width, height=height, fovy_deg=fovy_deg
        )
        chunks.append(render(frames, cameras, background=1.0).rgb.clamp(0.0, 1.0).cpu())
    return torch.cat(chunks)


def write_frame_plys(
    folder_uri: str,
    canonical: Gaussians,
    field: DeformationField,
    n_frames: int,
    *,
    sh_degree: int = 3,
    batch: int = DEFAULT_BATCH,
) -> list[str]:
    """``<t>.ply`` and ``<t>.splat`` for every frame; returns the PLYs' URIs. Frame files left from an
    earlier, longer export are removed."""
    uris = []
    with torch.no_grad():
        for start in range(0, n_frames, batch):
            frames = deform(canonical, field, torch.arange(start, min(start + batch, n_frames)), n_frames)
            for offset in range(frames.means.shape[0]):
                frame = frames.map(lambda t, k=offset: t[k])
                uris.append(storage.join(folder_uri, f"{start + offset}.ply"))
                write_gaussians_ply(uris[-1], frame, sh_degree=sh_degree)
                write_splat(storage.join(folder_uri, f"{start + offset}.splat"), frame)
    keep = {f"{t}{suffix}" for t in range(n_frames) for suffix in (".ply", ".splat")}
    for name in storage.listdir(folder_uri):
        stem, _, suffix = name.rpartition(".")
        if name not in keep and suffix in ("ply", "splat") and stem.isdigit():
            storage.remove(storage.join(folder_uri, name))
    return uris


def write_turntable(
    uri: str,
    canonical: Gaussians,
    field: DeformationField,
    n_frames: int,
    *,
    distance: float,
    config: ExportConfig,
    width: int,
    height: int,
    fovy_deg: float = FOVY_DEG,
    batch: int = DEFAULT_BATCH,
) -> str:
    """A 360° orbit starting at the front, view i showing frame i mod T, so the object animates."""
    views = config.turntable_frames
    rgb = render_views(
        canonical,
        field,
        n_frames,
        torch.arange(views) % n_frames,
        config.turntable_elevation,
        torch.arange(views, dtype=torch.float64) * (360.0 / views),
        distance,
        width=width,
        height=height,
        fovy_deg=fovy_deg,
        batch=batch,
    )
    write_video(uri, rgb, fps=config.fps)
    return uri


def write_front_vs_input(
    uri: str,
    canonical: Gaussians,
    field: DeformationField,
    video_frames: Tensor,
    *,
    distance: float,
    fps: float,
    fovy_deg: float = FOVY_DEG,
    batch: int = DEFAULT_BATCH,
) -> str:
    """Input frame t beside the front render of frame t: the known-view fit, judged by eye."""
    n_frames, height, width, _ = video_frames.shape
    front = render_views(
        canonical,
        field,
        n_frames,
        torch.arange(n_frames),
        EVAL_ELEVATION,
        FRONT_AZIMUTH,
        distance,
        width=width,
        height=height,
        fovy_deg=fovy_deg,
        batch=batch,
    )
    write_video(uri, torch.cat([video_frames.detach().to("cpu", torch.float32), front], dim=2), fps=fps)
    return uri


def write_eval_views(
    folder_uri: str,
    canonical: Gaussians,
    field: DeformationField,
    n_frames: int,
    *,
    distance: float,
    size: int,
    fovy_deg: float = FOVY_DEG,
    azimuths: tuple[float, ...] = EVAL_AZIMUTHS,
    batch: int = DEFAULT_BATCH,
    progress: ProgressCallback | None = None,
) -> list[str]:
    """``eval_<k>/<t>.png`` for every test azimuth and frame; returns the ``eval_<k>`` folders.

    One azimuth at a time, so at most T images are held in memory.
    """
    folders = []
    for k, azimuth in enumerate(azimuths):
        rgb = render_views(
            canonical,
            field,
            n_frames,
            torch.arange(n_frames),
            EVAL_ELEVATION,
            azimuth,
            distance,
            width=size,
            fovy_deg=fovy_deg,
            batch=batch,
        )
        folders.append(storage.join(folder_uri, f"eval_{k}"))
        write_frames(folders[-1], rgb)
        if progress is not None:
            progress(f"eval_{k}", k + 1, len(azimuths))
    return folders


def export_object(
    out_uri: str,
    canonical: Gaussians,
    field: DeformationField,
    *,
    n_frames: int,
    distance: float,
    video_frames: Tensor,
    config: ExportConfig = ExportConfig(),
    eval_size: int | None = None,
    fovy_deg: float = FOVY_DEG,
    metadata: dict | None = None,
    batch: int = DEFAULT_BATCH,
    progress: ProgressCallback | None = None,
) -> dict[str, str]:
    """Write every artifact of the object folder ``out_uri``; returns artifact name -> URI.

    ``video_frames (T, H, W, 3)`` is the input video the object was fitted to. The evaluation size
    is ``config.eval_size``, else ``eval_size`` (the ground-truth views' size, when there are
    any), else 512. The distance and field of view are stored in the deformation file's metadata
    with ``metadata``, so the file alone says how to view the object as it was fitted.
    """
    if video_frames.dim() != 4 or video_frames.shape[0] != n_frames or video_frames.shape[-1] != 3:
        raise ValueError(f"video_frames must be ({n_frames}, H, W, 3), got {tuple(video_frames.shape)}")
    size = config.eval_size or eval_size or DEFAULT_EVAL_SIZE
    height, width = int(video_frames.shape[1]), int(video_frames.shape[2])
    uris = {name: storage.join(out_uri, path) for name, path in ARTIFACTS.items()}
    total = len(ARTIFACTS) - 1 + len(EVAL_AZIMUTHS)
    done = 0

    def step(name: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(name, done, total)

    write_gaussians_ply(uris["canonical"], canonical, sh_degree=config.ply_sh_degree)
    step("canonical")
    write_splat(uris["canonical_splat"], canonical)
    step("canonical_splat")
    viewing = {"distance": float(distance), "fovy_deg": float(fovy_deg), "fps": float(config.fps)}
    save_deformation(uris["deformation"], field, {**viewing, **(metadata or {})})
    step("deformation")
    write_frame_plys(uris["frames"], canonical, field, n_frames, sh_degree=config.ply_sh_degree, batch=batch)
    step("frames")
    write_turntable(
        uris["turntable"],
        canonical,
        field,
        n_frames,
        distance=distance,
        config=config,
        width=width,
        height=height,
        fovy_deg=fovy_deg,
        batch=batch,
    )
    step("turntable")
    write_front_vs_input(
        uris["front_vs_input"],
        canonical,
        field,
        video_frames,
        distance=distance,
        fps=config.fps,
        fovy_deg=fovy_deg,
        batch=batch,
    )
    step("front_vs_input")
    write_eval_views(
        uris["eval"],
        canonical,
        field,
        n_frames,
        distance=distance,
        size=size,
        fovy_deg=fovy_deg,
        batch=batch,
        progress=lambda name, _k, _n: step(name),
    )
    write_viewer(
        uris["viewer"],
        canonical,
        field,
        n_frames,
        distance=distance,
        fovy_deg=fovy_deg,
        fps=config.fps,
        input_frames=video_frames,
        title=metadata.get("item", "4D object") if metadata else "4D object",
    )
    step("viewer")
    return uris
