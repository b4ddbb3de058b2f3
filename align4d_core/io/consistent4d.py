"""``align4d import consistent4d SRC DEST``: the Consistent4D benchmark as an X4D dataset.

Consistent4D (Jiang et al., 2023) gives each object as an input video of RGBA PNG frames and, for
evaluation, ground-truth views at four azimuths (the protocol of DESIGN.md §7)::

    SRC/<name>/<frame>.png                       input video (RGBA: the alpha is the mask)
    SRC/eval_gt/<name>/eval_<k>/<frame>.png      ground-truth view k

(``--videos SUBDIR`` when the input videos sit in a subfolder of SRC.) The import copies the files
byte for byte into ``DEST/items/<name>/video/`` and ``DEST/items/<name>/eval/eval_<k>/`` and writes
a manifest of ``video`` items with ``eval`` set where ground truth exists. Re-importing into
the same DEST overwrites it file by file. The 3D object is not
part of Consistent4D: the pair stage makes it (video -> first frame -> image-to-3D), so the paper's
Table II benchmark runs with ``align4d run --dataset DEST``.

Everything is listed and checked (names usable as item ids, at least two frames, consecutive
frame numbers, ``eval_<k>`` view folders) before the first file is copied, and the manifest is
written last, so a failed import never leaves a dataset that validates.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.manifest import Item, write_manifest
from align4d_core.io.media import list_frames

__all__ = ["EVAL_FOLDER", "import_consistent4d"]

EVAL_FOLDER = "eval_gt"
_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
_VIEW = re.compile(r"^eval_\d+$")

ProgressCallback = Callable[[str, int, int], None]
"""``progress(name, done, total)`` after each object is copied."""


def import_consistent4d(
    src: str, dest: str, *, videos: str | None = None, progress: ProgressCallback | None = None
) -> list[Item]:
    """Copy a Consistent4D folder into ``dest`` as an X4D dataset; return its manifest items."""
    video_root = storage.safe_child(src, videos) if videos else src
    if not storage.isdir(video_root):
        raise InputError("not a folder", uri=video_root)
    names = [
        n
        for n in storage.listdir(video_root)
        if not n.startswith(".") and n != EVAL_FOLDER and storage.isdir(storage.join(video_root, n))
    ]
    if not names:
        raise InputError("no input videos: expected one folder of PNG frames per object", uri=video_root)
    plans = [_plan(src, video_root, name) for name in names]
    items = []
    for done, (name, frames, views) in enumerate(plans, start=1):
        base = f"items/{name}"
        for frame in frames:
            storage.copy_file(storage.join(video_root, name, frame), storage.join(dest, base, "video", frame))
        for view, view_frames in views.items():
            for frame in view_frames:
                storage.copy_file(
                    storage.join(src, EVAL_FOLDER, name, view, frame), storage.join(dest, base, "eval", view, frame)
                )
        items.append(Item(id=name, source="video", video=f"{base}/video", eval=f"{base}/eval" if views else None))
        if progress is not None:
            progress(name, done, len(plans))
    write_manifest(dest, items)
    return items


def _plan(src: str, video_root: str, name: str) -> tuple[str, list[str], dict[str, list[str]]]:
    """The frames of one object's video and of its ground-truth views, checked; nothing copied."""
    if not _ID.match(name):
        raise InputError(
            "the folder name is not usable as an item id (1-100 letters, digits, '-', '_', '.')",
            uri=storage.join(video_root, name),
        )
    try:
        frames = list_frames(storage.join(video_root, name))
    except InputError as exc:
        raise exc.within(item=name, field="video") from None
    if len(frames) < 2:
        raise InputError(
            f"a video needs at least 2 frames, this one has {len(frames)}",
            uri=storage.join(video_root, name),
            item=name,
            field="video",
        )
    views: dict[str, list[str]] = {}
    truth = storage.join(src, EVAL_FOLDER, name)
    if storage.isdir(truth):
        found = [v for v in storage.listdir(truth) if _VIEW.match(v) and storage.isdir(storage.join(truth, v))]
        if not found:
            raise InputError("no eval_<k> view folders", uri=truth, item=name, field="eval")
        for view in sorted(found, key=lambda v: int(v.split("_")[1])):
            try:
                views[view] = list_frames(storage.join(truth, view))
            except InputError as exc:
                raise exc.within(item=name, field="eval") from None
    return name, frames, views
