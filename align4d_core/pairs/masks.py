"""Foreground masks for generated images and videos, and compositing on white (DESIGN.md §4, §6).

The optimizer compares renders on a white background with the video frames and fits the masks
(KSVA, eq. 6), so every generated frame must come with a mask and be composited on white. The rule,
first that applies:

1. **alpha** — the input has an alpha channel (an RGBA image or PNG frames, a front render of a 3D
   input): it is the mask;
2. **background removal** — ``masks.backend`` is ``rembg`` or ``auto``, and the ``rembg`` package
   and its model file (``$U2NET_HOME`` or ``~/.u2net/<name>.onnx``) are on this machine: rembg's
   alpha matte. Weights are never downloaded (a benchmark must not stall on a download);
3. **white-background threshold** — a pixel is background when every channel lies within
   ``masks.white_threshold`` (0.08, about 20/255) of white *and* it is connected to the image border
   through such pixels (4-connected). The connectivity keeps white parts inside the object (a white belly, a
   highlight) in the foreground. SDXL is prompted for a white background (``prompt_suffix``) and SVD
   keeps the background of its first frame, which is what makes this rule work on generated pairs.

Frames are then composited on white with their mask: ``rgb * m + (1 - m)``, so an almost-white
generated background becomes exactly the white the renderer draws.
"""

from __future__ import annotations

import importlib.util
import logging
import os

import numpy as np
import torch
from torch import Tensor

from align4d_core.config import MaskConfig
from align4d_core.errors import InputError

__all__ = [
    "MASK_BACKENDS",
    "border_connected",
    "composite",
    "foreground_masks",
    "mask_backend",
    "white_background_masks",
]

MASK_BACKENDS = ("auto", "rembg", "threshold")
log = logging.getLogger(__name__)


def composite(rgb: Tensor, mask: Tensor) -> Tensor:
    """``rgb * mask + (1 - mask)``: colour over white (shapes broadcast)."""
    return (rgb * mask + (1.0 - mask)).clamp(0.0, 1.0)


def white_background_masks(frames: Tensor, threshold: float) -> Tensor:
    """Masks ``(T, H, W, 1)`` of frames ``(T, H, W, 3)`` by the white-background rule (module notes)."""
    if not 0.0 < threshold < 1.0:
        raise InputError(f"masks.white_threshold must lie in (0, 1), got {threshold}", field="masks")
    near_white = (1.0 - frames.float()).amax(dim=-1) <= threshold  # (T, H, W)
    background = border_connected(near_white)
    return (~background).float()[..., None]


def border_connected(region: Tensor) -> Tensor:
    """The pixels of ``region (T, H, W)`` bool that reach the image border through ``region``
    (4-connected, per frame), by scipy's connected-component labelling."""
    from scipy import ndimage

    out = np.zeros(tuple(region.shape), dtype=bool)
    for t, frame in enumerate(region.cpu().numpy()):
        labels, _ = ndimage.label(frame)
        edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        out[t] = np.isin(labels, edge[edge > 0])
    return torch.from_numpy(out)


def mask_backend(config: MaskConfig) -> str:
    """The backend that will run: ``rembg`` or ``threshold`` (``auto`` decided by what is installed)."""
    if config.backend not in MASK_BACKENDS:
        raise InputError(
            f"unknown masks.backend {config.backend!r}; expected one of {', '.join(MASK_BACKENDS)}", field="masks"
        )
    if config.backend == "threshold":
        return "threshold"
    reason = _rembg_missing(config.rembg_model)
    if reason is None:
        return "rembg"
    if config.backend == "rembg":
        raise InputError(
            f"masks.backend 'rembg' cannot run here: {reason}; use masks.backend 'threshold' or "
            "'auto' for the white-background rule",
            field="masks",
        )
    return "threshold"


def _rembg_missing(model: str) -> str | None:
    """Why rembg cannot run (None: it can): the package, or its model file, is absent."""
    if importlib.util.find_spec("rembg") is None:
        return "the rembg package is not installed (pip install rembg)"
    home = os.environ.get("U2NET_HOME") or os.path.join(os.path.expanduser("~"), ".u2net")
    path = os.path.join(home, f"{model}.onnx")
    if not os.path.isfile(path):
        return f"its model file {path} is not on this machine (rembg would download it; copy it there instead)"
    return None


def foreground_masks(frames: Tensor, config: MaskConfig) -> tuple[Tensor, str]:
    """Masks ``(T, H, W, 1)`` for frames ``(T, H, W, 3)`` without alpha, and the backend used."""
    backend = mask_backend(config)
    if backend == "rembg":
        return _rembg_masks(frames, config.rembg_model), "rembg"
    return white_background_masks(frames, config.white_threshold), "threshold"


def _rembg_masks(frames: Tensor, model: str) -> Tensor:
    from PIL import Image
    from rembg import new_session, remove

    session = new_session(model)
    masks = []
    for frame in frames:
        image = Image.fromarray((frame.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        matte = remove(image, session=session, only_mask=True)
        masks.append(np.asarray(matte, dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(masks))[..., None]
