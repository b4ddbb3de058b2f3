"""Deep validation of an X4D dataset, and loading one quadruplet for the pipeline (DESIGN.md §3).

:func:`~align4d_core.io.manifest.check_files` only looks at names and kinds; :func:`validate_dataset`
reads everything an item names, the way the pipeline will, and collects every problem instead of
stopping at the first:

* ``video``: readable (mp4 or PNG frames), at least 2 frames, all frames one size;
* ``masks``: readable, as many frames as the video, the video's size;
* ``object``: loads through :func:`~align4d_core.io.objects.load_object` with > 0 Gaussians, all
  finite;
* ``image``: readable (its size is free: an input image need not match the video);
* ``eval``: views ``eval_0 .. eval_{K-1}`` (Consistent4D layout), each as many frames as the video
  and all of one size (ground truth may be rendered at another resolution than the input video).

Each problem is an :class:`~align4d_core.errors.InputError` carrying the item and the field. One
bad item never stops the others. Problems of the manifest itself (a line that is not JSON, a
duplicate id) are dataset-level errors; its other lines are still validated. Only a dataset that
cannot be read at all (no folder, no manifest) raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.manifest import MANIFEST_NAME, Item, item_uri, parse_manifest
from align4d_core.io.media import Video, read_image, read_masks, read_video
from align4d_core.io.mesh import DEFAULT_N
from align4d_core.io.objects import load_object
from align4d_core.scene.gaussians import Gaussians

__all__ = [
    "DatasetReport",
    "ItemReport",
    "LoadedItem",
    "load_item",
    "read_manifest_lenient",
    "validate_dataset",
    "validate_item",
]

_EVAL_VIEW = re.compile(r"^eval_(\d+)$")
MIN_FRAMES = 2


@dataclass
class ItemReport:
    """What validation found for one item: errors, and a few facts when the files were readable."""

    id: str
    errors: list[InputError] = field(default_factory=list)
    frames: int | None = None
    size: tuple[int, int] | None = None  # video (width, height)
    gaussians: int | None = None
    eval_views: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class DatasetReport:
    """Every item's report, plus the problems of the manifest itself."""

    root: str
    items: list[ItemReport]
    errors: list[InputError] = field(default_factory=list)  # dataset-level (manifest lines)

    @property
    def ok(self) -> bool:
        return not self.errors and all(item.ok for item in self.items)

    @property
    def all_errors(self) -> list[InputError]:
        return [*self.errors, *(e for item in self.items for e in item.errors)]


@dataclass
class LoadedItem:
    """One quadruplet in memory: the video, its masks (None when the item has none) and the object."""

    item: Item
    video: Video
    masks: torch.Tensor | None
    gaussians: Gaussians


# --- manifest ----------------------------------------------------------------------------------


def read_manifest_lenient(root: str) -> tuple[list[Item], list[InputError]]:
    """The usable items of ``<root>/manifest.jsonl`` and an error per unusable line.

    Same rules as :func:`~align4d_core.io.manifest.read_manifest`, but a bad line (not JSON, not a
    valid item, a duplicate id) is reported and skipped instead of stopping the read. A missing
    folder or manifest raises :class:`InputError`.
    """
    if not storage.isdir(root):
        reason = "not a folder" if storage.exists(root) else "dataset folder not found"
        raise InputError(reason, uri=str(root))
    uri = storage.join(root, MANIFEST_NAME)
    if not storage.exists(uri):
        raise InputError(f"no {MANIFEST_NAME}: not a dataset (or an unfinished one)", uri=str(root))
    return parse_manifest(root)


# --- validation --------------------------------------------------------------------------------


def validate_dataset(
    root: str,
    *,
    n_from_mesh: int = DEFAULT_N,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> DatasetReport:
    """Read and check every item of the dataset at ``root``; see the module notes for the checks.

    ``n_from_mesh`` and ``seed`` are passed to :func:`load_object` for mesh objects.
    ``progress(item_id, done, total)`` is called after each item.
    """
    items, errors = read_manifest_lenient(root)
    reports = []
    for index, item in enumerate(items, start=1):
        reports.append(validate_item(root, item, n_from_mesh=n_from_mesh, seed=seed))
        if progress is not None:
            progress(item.id, index, len(items))
    return DatasetReport(root=str(root), items=reports, errors=errors)


def validate_item(root: str, item: Item, *, n_from_mesh: int = DEFAULT_N, seed: int = 0) -> ItemReport:
    """Every problem of one item's files (see the module notes), none raised."""
    report = ItemReport(id=item.id)

    def check(name: str, fn: Callable[[str], None]) -> None:
        if getattr(item, name) is None:
            return
        try:
            fn(item_uri(root, item, name))
        except InputError as exc:
            report.errors.append(exc.within(item=item.id, field=name))

    video: Video | None = None

    def check_video(uri: str) -> None:
        nonlocal video
        loaded = read_video(uri)
        if loaded.num_frames < MIN_FRAMES:
            raise InputError(f"the video has {loaded.num_frames} frame(s); at least {MIN_FRAMES} are needed", uri=uri)
        video = loaded
        report.frames, report.size = loaded.num_frames, (loaded.width, loaded.height)

    def check_masks(uri: str) -> None:
        masks = read_masks(uri)
        if video is None:
            return
        if masks.shape[0] != video.num_frames:
            raise InputError(f"{masks.shape[0]} masks for a video of {video.num_frames} frames", uri=uri)
        height, width = masks.shape[1:3]
        if (width, height) != (video.width, video.height):
            video_size = f"{video.width}x{video.height}"
            raise InputError(f"masks are {width}x{height} but the video is {video_size}", uri=uri)

    def check_object(uri: str) -> None:
        gaussians = load_object(uri, n_from_mesh=n_from_mesh, seed=seed)
        if len(gaussians) == 0:
            raise InputError("the object has no Gaussians", uri=uri)
        gaussians.validate(what=uri)
        report.gaussians = len(gaussians)

    def check_image(uri: str) -> None:
        read_image(uri)

    def check_eval(uri: str) -> None:
        report.eval_views = _check_eval(uri, video)

    check("video", check_video)
    check("masks", check_masks)
    check("object", check_object)
    check("image", check_image)
    check("eval", check_eval)
    return report


def _check_eval(uri: str, video: Video | None) -> int:
    """Check the eval_<k> views of one item; returns how many there are."""
    if not storage.isdir(uri):
        raise InputError("eval folder not found" if not storage.exists(uri) else "not a folder", uri=uri)
    views = {}
    for name in storage.listdir(uri):
        match = _EVAL_VIEW.match(name)
        if match and storage.isdir(storage.join(uri, name)):
            views[int(match[1])] = name
    if not views:
        raise InputError("no eval_<k> view folders (eval_0, eval_1, ...)", uri=uri)
    missing = [f"eval_{k}" for k in range(max(views) + 1) if k not in views]
    if missing:
        raise InputError(f"views are eval_0 .. eval_{max(views)} without gaps; missing {', '.join(missing)}", uri=uri)
    first: tuple[str, int, int] | None = None
    for k in sorted(views):
        view_uri = storage.join(uri, views[k])
        frames = read_video(view_uri)
        if video is not None and frames.num_frames != video.num_frames:
            reason = f"{views[k]} has {frames.num_frames} frames, the video {video.num_frames}"
            raise InputError(reason, uri=view_uri)
        if first is None:
            first = (views[k], frames.width, frames.height)
        elif (frames.width, frames.height) != first[1:]:
            raise InputError(
                f"{views[k]} is {frames.width}x{frames.height} but {first[0]} is {first[1]}x{first[2]}; "
                "all eval views must have one size",
                uri=view_uri,
            )
    return len(views)


# --- loading -----------------------------------------------------------------------------------


def load_item(root: str, item: Item, *, n_from_mesh: int = DEFAULT_N, seed: int = 0) -> LoadedItem:
    """The video, masks and Gaussians of one item (InputError with item and field on bad input).

    Checks what the pipeline relies on: at least 2 frames, and masks of the video's frame count and
    size. ``n_from_mesh`` and ``seed`` are passed to :func:`load_object` for mesh objects.
    """

    def field_error(name: str, exc: InputError) -> InputError:
        return exc.within(item=item.id, field=name)

    try:
        video = read_video(item_uri(root, item, "video"))
    except InputError as exc:
        raise field_error("video", exc) from None
    if video.num_frames < MIN_FRAMES:
        raise InputError(
            f"the video has {video.num_frames} frame(s); at least {MIN_FRAMES} are needed", item=item.id, field="video"
        )
    masks = None
    if item.masks is not None:
        try:
            masks = read_masks(item_uri(root, item, "masks"))
        except InputError as exc:
            raise field_error("masks", exc) from None
        if tuple(masks.shape[:3]) != (video.num_frames, video.height, video.width):
            raise InputError(
                f"masks have shape {tuple(masks.shape[:3])} (T, H, W) but the video "
                f"{(video.num_frames, video.height, video.width)}",
                item=item.id,
                field="masks",
            )
    try:
        gaussians = load_object(item_uri(root, item, "object"), n_from_mesh=n_from_mesh, seed=seed)
        if len(gaussians) == 0:
            raise InputError("the object has no Gaussians", uri=item.object)
    except InputError as exc:
        raise field_error("object", exc) from None
    return LoadedItem(item=item, video=video, masks=masks, gaussians=gaussians)
