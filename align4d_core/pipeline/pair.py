"""An item's video-3D pair read into the optimizer's :class:`~align4d_core.method.optimize.Pair`."""

from __future__ import annotations

import torch

from align4d_core.config import RunConfig
from align4d_core.errors import InputError
from align4d_core.io.manifest import Item
from align4d_core.io.media import read_masks, read_video
from align4d_core.io.objects import load_object
from align4d_core.method.optimize import Pair


def load_pair(item: Item, config: RunConfig, device: torch.device) -> Pair:
    """Frames on white, masks (given, else the video's alpha, else none) and the 3D input."""
    if not item.complete:
        missing = [name for name in ("video", "object") if getattr(item, name) is None]
        raise InputError(f"no {' or '.join(missing)}: the pair stage makes it first", item=item.id, field=missing[0])
    try:
        video = read_video(item.video)
    except InputError as exc:
        raise exc.within(field="video") from None
    try:
        masks = read_masks(item.masks) if item.masks is not None else video.alpha
    except InputError as exc:
        raise exc.within(field="masks") from None
    try:
        gaussians = load_object(item.object, n_from_mesh=config.mesh_samples)
    except InputError as exc:
        raise exc.within(field="object") from None
    masks = None if masks is None else masks.to(device)
    return Pair(video.frames.to(device), masks, gaussians.to(device), fovy_deg=config.fovy_deg).validate()
