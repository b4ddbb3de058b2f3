"""``viewer.html``: one self-contained page to turn a 4D object around and scrub through its frames.

The page draws the Gaussians with WebGL2 (``viewer_assets/viewer.js``, the project's own renderer,
in the conventions of our CPU renderer and gsplat: :mod:`align4d_core.scene.cameras`,
:mod:`align4d_core.scene.render.projection`), starts at the VAOD front camera the object was fitted
at, and shows the input video beside it. Everything is inline (no network, no CDN), so the page
opens from disk or as one object in S3.

What it holds, compactly (base64 in the page): the canonical positions (float32) and colours with
opacity (RGBA8, once), then per frame float16 position offsets from the canonical object,
rotations (normalised wxyz) and log scales, which is 20 bytes per Gaussian and frame. float16 keeps
an offset of up to ±0.5 to 2.4e-4 and a rotation to 5e-4. An object over ``max_gaussians``
is shown by its ``max_gaussians`` most prominent Gaussians (opacity × volume, the order of the
``.splat`` format), and the page says so: a 500k-Gaussian object still opens, never hangs.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from importlib import resources

import jinja2
import markupsafe
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from align4d_core.config import EVAL_AZIMUTHS, ExportConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.media import read_video
from align4d_core.io.ply import read_gaussians_ply
from align4d_core.scene.cameras import FOVY_DEG
from align4d_core.scene.deformation import DeformationField, deform, load_deformation, read_deformation_metadata
from align4d_core.scene.gaussians import Gaussians

__all__ = ["MAX_GAUSSIANS", "VIEWER", "ViewerData", "viewer_data", "viewer_html", "write_viewer", "write_viewer_of"]

VIEWER = "viewer.html"
"""The page's name inside an object folder (DESIGN.md §9)."""

MAX_GAUSSIANS = 200_000
"""Gaussians a page holds at most: 200k × 20 bytes × frames of float16, ~4 MB a frame, which a
browser decodes in well under a second; larger objects are subsampled (see the module notes)."""

INPUT_WIDTH = 320
"""Width of the input-video frames kept in the page (JPEG), enough to compare by eye."""

CANVAS_WIDTH = 512
"""The viewer's width in CSS pixels; its height follows the input video's aspect."""

REQUIRED = ("object/canonical.ply", "object/deformation.safetensors")
"""What makes a folder a 4D object that the viewer can show (pipeline/export.py's artifacts)."""

FRONT_VS_INPUT = "videos/front_vs_input.mp4"


@dataclass
class ViewerData:
    """The arrays the page draws, and what it says about them."""

    means: np.ndarray  # (N, 3) float32 canonical positions
    colors: np.ndarray  # (N, 4) uint8 RGB and opacity
    d_means: np.ndarray  # (T, N, 3) float16 offsets from ``means``
    quats: np.ndarray  # (T, N, 4) float16 normalised wxyz
    log_scales: np.ndarray  # (T, N, 3) float16
    total: int  # Gaussians in the object before any subsampling

    @property
    def count(self) -> int:
        return int(self.means.shape[0])

    @property
    def frames(self) -> int:
        return int(self.d_means.shape[0])


def prominent(gaussians: Gaussians, limit: int) -> Tensor:
    """Indices of the ``limit`` Gaussians with the largest opacity × volume, in their stored order."""
    if len(gaussians) <= limit:
        return torch.arange(len(gaussians))
    importance = gaussians.opacities * torch.exp(gaussians.log_scales.sum(dim=-1))
    return torch.topk(importance, limit).indices.sort().values


@torch.no_grad()
def viewer_data(
    canonical: Gaussians, field: DeformationField, n_frames: int, *, max_gaussians: int = MAX_GAUSSIANS, batch: int = 8
) -> ViewerData:
    """The page's arrays: the canonical object and every frame the field deforms it to."""
    if max_gaussians < 1:
        raise ValueError(f"max_gaussians must be at least 1, got {max_gaussians}")
    device = next(field.parameters()).device
    keep = prominent(canonical, max_gaussians)
    shown = canonical.map(lambda t: t[keep.to(t.device)]).to(device)
    d_means, quats, log_scales = [], [], []
    for start in range(0, n_frames, batch):
        frames = deform(shown, field, torch.arange(start, min(start + batch, n_frames)), n_frames)
        d_means.append((frames.means - shown.means).float().cpu())
        quats.append(torch.nn.functional.normalize(frames.quats.float(), dim=-1).cpu())
        log_scales.append(frames.log_scales.float().cpu())
    rgb = shown.colors.clamp(0.0, 1.0).float().cpu()
    opacity = shown.opacities.clamp(0.0, 1.0).float().cpu()[:, None]
    colors = torch.round(torch.cat([rgb, opacity], dim=-1) * 255.0).to(torch.uint8)
    return ViewerData(
        means=shown.means.float().cpu().numpy(),
        colors=colors.numpy(),
        d_means=torch.cat(d_means).numpy().astype(np.float16),
        quats=torch.cat(quats).numpy().astype(np.float16),
        log_scales=torch.cat(log_scales).numpy().astype(np.float16),
        total=len(canonical),
    )


def _pack(data: ViewerData) -> tuple[bytes, dict[str, int]]:
    """The arrays one after the other (float32 first, so every view is aligned), and their offsets."""
    parts = [
        ("means", data.means.astype("<f4")),
        ("colors", data.colors),
        ("d_means", data.d_means.astype("<f2")),
        ("quats", data.quats.astype("<f2")),
        ("log_scales", data.log_scales.astype("<f2")),
    ]
    layout, chunks, offset = {}, [], 0
    for name, array in parts:
        layout[name] = offset
        chunks.append(np.ascontiguousarray(array).tobytes())
        offset += len(chunks[-1])
    return b"".join(chunks), layout


def _jpeg_frames(frames: Tensor | None) -> list[str]:
    """The input video as data-URI JPEGs of ``INPUT_WIDTH`` px, one per frame."""
    if frames is None:
        return []
    out = []
    for frame in frames.detach().float().cpu().clamp(0.0, 1.0):
        image = Image.fromarray((frame.numpy() * 255.0 + 0.5).astype(np.uint8))
        if image.width > INPUT_WIDTH:
            image = image.resize((INPUT_WIDTH, round(image.height * INPUT_WIDTH / image.width)), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=82)
        out.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return out


def _template() -> jinja2.Template:
    text = resources.files("align4d_core.pipeline").joinpath("viewer_assets/viewer.html.j2").read_text("utf-8")
    return jinja2.Environment(autoescape=True).from_string(text)


def _script() -> str:
    return resources.files("align4d_core.pipeline").joinpath("viewer_assets/viewer.js").read_text("utf-8")


def _inline(text: str) -> markupsafe.Markup:
    """Text safe inside a ``<script>`` element: no ``</`` can close it early."""
    return markupsafe.Markup(text.replace("</", "<\\/"))


def viewer_html(
    data: ViewerData,
    *,
    distance: float,
    fovy_deg: float = FOVY_DEG,
    fps: float = ExportConfig().fps,
    input_frames: Tensor | None = None,
    title: str = "4D object",
    canvas_size: tuple[int, int] = (512, 512),
) -> str:
    """The page for ``data``, starting at the front camera at ``distance`` (VAOD)."""
    blob, layout = _pack(data)
    shown = (
        f"{data.count:,} Gaussians"
        if data.count == data.total
        else (f"{data.count:,} of {data.total:,} Gaussians (the most prominent; the page holds at most {data.count:,})")
    )
    note = f"Showing {shown}, {data.frames} frames at {fps:g} fps."
    meta = {
        "count": data.count,
        "total": data.total,
        "frames": data.frames,
        "fps": float(fps),
        "distance": float(distance),
        "fovy_deg": float(fovy_deg),
        "layout": layout,
        "input_frames": _jpeg_frames(input_frames),
        "note": note,
    }
    summary = f"VAOD {distance:.3f}, vertical field of view {fovy_deg:g}°. {note}"
    return _template().render(
        title=title,
        summary=summary,
        has_input=bool(meta["input_frames"]),
        input_width=INPUT_WIDTH,
        canvas_width=canvas_size[0],
        canvas_height=canvas_size[1],
        eval_azimuths=[f"{a:g}" for a in EVAL_AZIMUTHS],
        meta_json=_inline(json.dumps(meta)),
        data_base64=markupsafe.Markup(base64.b64encode(blob).decode("ascii")),
        script=_inline(_script()),
    )


def write_viewer(
    uri: str,
    canonical: Gaussians,
    field: DeformationField,
    n_frames: int,
    *,
    distance: float,
    fovy_deg: float = FOVY_DEG,
    fps: float = ExportConfig().fps,
    input_frames: Tensor | None = None,
    title: str = "4D object",
    max_gaussians: int = MAX_GAUSSIANS,
) -> dict:
    """Write the page at ``uri`` (atomically, any storage URI); returns its size and what it shows."""
    data = viewer_data(canonical, field, n_frames, max_gaussians=max_gaussians)
    size = (CANVAS_WIDTH, CANVAS_WIDTH)
    if input_frames is not None:  # the input camera's aspect, so that the front view frames as it did
        height, width = input_frames.shape[1:3]
        size = (CANVAS_WIDTH, max(1, round(CANVAS_WIDTH * height / width)))
    page = viewer_html(
        data,
        distance=distance,
        fovy_deg=fovy_deg,
        fps=fps,
        input_frames=input_frames,
        title=title,
        canvas_size=size,
    )
    encoded = page.encode("utf-8")
    storage.write_bytes(uri, encoded)
    return {"uri": uri, "bytes": len(encoded), "gaussians": data.count, "total": data.total, "frames": data.frames}


def check_object_folder(folder: str) -> None:
    """An :class:`InputError` naming every file a 4D object folder lacks."""
    if not storage.isdir(folder):
        raise InputError("folder not found", uri=folder)
    missing = [name for name in REQUIRED if not storage.exists(storage.join(folder, name))]
    if missing:
        raise InputError(
            f"not a 4D object folder: {', '.join(missing)} missing (a folder written by `align4d generate`, "
            "an item of a run, or a run folder)",
            uri=folder,
        )


def write_viewer_of(folder: str, *, max_gaussians: int = MAX_GAUSSIANS, title: str | None = None) -> dict:
    """``<folder>/viewer.html`` from the object folder's own files.

    The input video comes from ``videos/front_vs_input.mp4`` (its left half), the viewing distance,
    field of view and frame rate from the deformation file's metadata; a folder without the video
    gets a page without it.
    """
    check_object_folder(folder)
    canonical = read_gaussians_ply(storage.join(folder, REQUIRED[0]))
    deformation_uri = storage.join(folder, REQUIRED[1])
    field = load_deformation(deformation_uri)
    metadata = read_deformation_metadata(deformation_uri)
    if "distance" not in metadata:
        raise InputError("the deformation file records no viewing distance (metadata 'distance')", uri=deformation_uri)
    input_frames = None
    video_uri = storage.join(folder, FRONT_VS_INPUT)
    if storage.exists(video_uri):
        both = read_video(video_uri).frames
        input_frames = both[:, :, : both.shape[2] // 2]
    return write_viewer(
        storage.join(folder, VIEWER),
        canonical,
        field,
        field.n_frames,
        distance=float(metadata["distance"]),
        fovy_deg=float(metadata.get("fovy_deg", FOVY_DEG)),
        fps=float(metadata.get("fps", ExportConfig().fps)),
        input_frames=input_frames,
        title=title or folder.rstrip("/").rsplit("/", 1)[-1],
        max_gaussians=max_gaussians,
    )
