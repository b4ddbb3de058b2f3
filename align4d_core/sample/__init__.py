"""The bundled synthetic X4D sample (DESIGN.md §3): ``align4d sample DIR``.

:func:`write_sample` writes a dataset of procedural animated objects (:mod:`.objects`), each
rendered from the front at its own *true* object distance, with ground-truth views at the
evaluation azimuths. It gives what no generated dataset gives: the distance ODA should find and the
true novel views. Layout under the root::

    manifest.jsonl                      written last: a half-written sample never validates
    sample.json                         the SampleConfig used
    items/<id>/image.png                frame 0 (RGBA: composited colour and alpha)
    items/<id>/video.mp4 | video/<t>.png   the front view, frames t = 0..T-1
    items/<id>/masks/<t>.png            the front view's alpha
    items/<id>/object.ply | object.glb | object.obj (+ object.mtl, flag.png)   frame 0 in 3D
    items/<id>/eval/eval_<k>/<t>.png    views at config.eval_azimuths[k], RGB on white
    items/<id>/truth.json               distance, camera, motion and shape parameters, seeds

Every view is elevation 0 at the item's true distance, fovy ``config.fovy_deg``, rendered by the
CPU rasterizer (``backend="cpu"``) so that the bytes do not depend on the machine's GPU. The
Gaussians that are animated are the 3D input *read back* through
:func:`~align4d_core.io.objects.load_object` with its defaults, exactly as a run reads the ``object``
field (a mesh is sampled with the loader's default count and seed, not ``config.gaussians``), so
the 3D input and the video agree exactly. The same config gives
the same bytes in every file: all randomness comes from generators seeded by ``config.seed`` and the
item id (so an item's files do not depend on which other items were selected).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch

from align4d_core.config import SampleConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.manifest import MANIFEST_NAME, Item, write_manifest
from align4d_core.io.media import write_frames, write_image, write_masks, write_video
from align4d_core.io.objects import load_object
from align4d_core.sample.objects import MAX_RADIUS, SAMPLE_OBJECTS, SampleObject, frame_phases, object_by_id
from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import render

__all__ = ["SAMPLE_ITEMS", "ProgressCallback", "item_seed", "select_objects", "write_sample"]

SAMPLE_ITEMS = tuple(obj.id for obj in SAMPLE_OBJECTS)
"""Ids of the sample's items, in manifest order (nearest object first)."""

ProgressCallback = Callable[[str, str, int, int], None]
"""``progress(item_id, step, steps_done, steps_total)``, called after each step of the sample."""

ELEVATION = 0.0
FRONT_AZIMUTH = 0.0


def select_objects(ids: tuple[str, ...] | list[str] = ()) -> list[SampleObject]:
    """The sample objects named by ``ids`` in the sample's order; all of them for an empty list."""
    if not ids:
        return list(SAMPLE_OBJECTS)
    known = object_by_id()
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InputError(
            f"unknown sample item(s) {', '.join(map(repr, unknown))}; known: {', '.join(SAMPLE_ITEMS)}",
            field="items",
        )
    wanted = set(ids)
    return [obj for obj in SAMPLE_OBJECTS if obj.id in wanted]


def item_seed(seed: int, item_id: str) -> int:
    """The seed of one item's random draws, from the sample seed and the item id (a uint32)."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(item_id.encode("utf-8"))]).generate_state(1)[0])


def write_sample(
    root: str, config: SampleConfig = SampleConfig(), *, progress: ProgressCallback | None = None
) -> list[Item]:
    """Write the sample dataset under ``root`` (any URI) and return its manifest items.

    An existing sample at ``root`` is overwritten in place: its manifest is removed first and
    written again last, so an interrupted run leaves a folder that does not validate.
    """
    _check_config(config)
    objects = select_objects(tuple(config.items))
    _prepare_root(root)
    storage.remove(storage.join(root, MANIFEST_NAME))
    steps_per_item = 2 + len(config.eval_azimuths)  # object, front view, eval views
    total = steps_per_item * len(objects)
    done = 0

    def step(item_id: str, name: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(item_id, name, done, total)

    items = [_write_item(root, obj, config, step) for obj in objects]
    storage.write_json(storage.join(root, "sample.json"), _jsonable(asdict(config)))
    write_manifest(root, items)
    return items


# --- one item ----------------------------------------------------------------------------------


def _write_item(root: str, obj: SampleObject, config: SampleConfig, step: Callable[[str, str], None]) -> Item:
    folder = f"items/{obj.id}"
    base = storage.join(root, folder)
    seed = item_seed(config.seed, obj.id)
    name = obj.write_object(base, config.gaussians, seed)
    # read back exactly as the pipeline reads a dataset's object field (its default mesh sampling),
    # so that the 3D input a run starts from is the one that made the video
    canonical = load_object(storage.join(base, name))
    frames = obj.deform(canonical, frame_phases(config.frames))
    max_radius = float(frames.means.norm(dim=-1).max())
    if max_radius > MAX_RADIUS:  # a bug in a shape or motion, not a user's input
        raise AssertionError(f"{obj.id} leaves the sphere of radius {MAX_RADIUS}: {max_radius:.3f}")
    step(obj.id, "object")

    front = _render(frames, FRONT_AZIMUTH, obj.distance, config)
    rgb, alpha = front.rgb.clamp(0.0, 1.0), front.alpha.clamp(0.0, 1.0)
    video = f"{folder}/video.mp4" if obj.video_format == "mp4" else f"{folder}/video"
    if obj.video_format == "mp4":
        write_video(storage.join(root, video), rgb, fps=config.fps)
    else:
        write_frames(storage.join(root, video), rgb)
    write_masks(storage.join(base, "masks"), alpha)
    write_image(storage.join(base, "image.png"), rgb[0], alpha[0])
    step(obj.id, "front view")

    for k, azimuth in enumerate(config.eval_azimuths):
        view = _render(frames, float(azimuth), obj.distance, config)
        write_frames(storage.join(base, "eval", f"eval_{k}"), view.rgb.clamp(0.0, 1.0))
        step(obj.id, f"eval view {k} (azimuth {azimuth:g})")

    truth = {
        "id": obj.id,
        "prompt": obj.prompt,
        "distance": obj.distance,
        "elevation": ELEVATION,
        "azimuth": FRONT_AZIMUTH,
        "fovy_deg": config.fovy_deg,
        "frames": config.frames,
        "size": config.size,
        "fps": config.fps,
        "eval_azimuths": list(config.eval_azimuths),
        "motion": {"type": obj.motion, "phase": "t / frames (one cycle over the video)", **obj.motion_params},
        "shape": {"type": obj.shape, **obj.shape_params},
        "gaussians": len(canonical),
        "seed": config.seed,
        "object_seed": seed,
        "object_loader": "align4d_core.io.objects.load_object with its defaults",
        "object": name,
        "object_format": obj.object_format,
        "video_format": obj.video_format,
        "max_radius": round(max_radius, 6),
        "render_backend": "cpu",
    }
    storage.write_json(storage.join(base, "truth.json"), _jsonable(truth))
    return Item(
        id=obj.id,
        source="video",
        prompt=obj.prompt,
        image=f"{folder}/image.png",
        video=video,
        object=f"{folder}/{name}",
        masks=f"{folder}/masks",
        eval=f"{folder}/eval",
    )


def _render(frames: Gaussians, azimuth: float, distance: float, config: SampleConfig):
    """All frames from one camera in one batched call (one deformed Gaussian set per frame)."""
    count = frames.means.shape[0]
    cameras = orbit_cameras(
        [ELEVATION] * count, [azimuth] * count, [distance] * count, width=config.size, fovy_deg=config.fovy_deg
    )
    with torch.no_grad():
        return render(frames, cameras, background=1.0, backend="cpu")


# --- checks and helpers ------------------------------------------------------------------------


def _check_config(config: SampleConfig) -> None:
    rules = (
        ("frames", config.frames >= 2, "at least 2 frames are needed"),
        ("size", config.size >= 16, "images must be at least 16 pixels"),
        ("gaussians", config.gaussians >= 16, "at least 16 Gaussians are needed"),
        ("fps", math.isfinite(config.fps) and config.fps > 0, "must be a positive number"),
        ("eval_azimuths", len(config.eval_azimuths) >= 1, "at least one evaluation azimuth is needed"),
    )
    for name, ok, reason in rules:
        if not ok:
            raise InputError(f"{reason} (got {getattr(config, name)!r})", field=name)


def _prepare_root(root: str) -> None:
    """Refuse a root that cannot hold a dataset (unknown protocol, an existing file)."""
    try:
        storage.filesystem(root)
    except (ValueError, ImportError) as exc:
        raise InputError(f"not a usable location ({exc})", uri=str(root)) from None
    if storage.exists(root) and not storage.isdir(root):
        raise InputError("exists and is a file, a folder was expected", uri=str(root))
    try:
        storage.makedirs(root)
    except OSError as exc:
        raise InputError(f"cannot create the folder ({exc.strerror or exc})", uri=str(root)) from None


def _jsonable(value):
    """Tuples as lists, recursively, so that the JSON written is what json.load gives back."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
