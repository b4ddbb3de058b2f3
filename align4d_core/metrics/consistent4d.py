"""Consistent4D's evaluation arithmetic, step for step (``metrics.protocol: consistent4d``).

The literature's Table II numbers come from Consistent4D's ``evaluation/compute_image_level_metrics.py``
and ``evaluation/compute_fvd.py`` (yanqinJiang/Consistent4D). What those scripts do to each frame,
and what this module does the same way:

* **Reading** (both scripts): ``PIL.Image.open``. The image script's ``rgba=True`` path sets the
  RGB of pixels whose alpha is 0 to white (255) and keeps the stored RGB of every other pixel, with
  no blending; we read RGBA (and LA, and palette images with transparency) that way, because the
  default path would score the alpha channel as a fourth colour and LPIPS(VGG) cannot take it.
  RGB files, the layout of Consistent4D's own data, read exactly as the script reads them.
* **Image metrics**: ``image.resize((512, 512))`` with PIL's default filter (bicubic, antialiased
  when shrinking) *on the 8-bit image*, then ``torch.from_numpy(np.array(image)).float()``: values
  0–255. PSNR is torchmetrics' with the data range of that era, ``target.max() − target.min()`` of
  the frame, so 10·log10(range² / MSE); SSIM is torchmetrics' (Gaussian window 11, σ 1.5, k1 0.01,
  k2 0.03, the map's 5-pixel border left out as torchmetrics < 1.5 did) with the data range
  ``max(range(pred), range(target))`` of the frame, computed here in float64 (:func:`ssim`).
  ``scripts/check_consistent4d.py`` runs the script's steps with torchmetrics 1.2.0 beside ours. LPIPS(VGG) gets ``x / 127.5 − 1`` of the same
  tensors; CLIP gets ``CLIPImageProcessor`` on the resized PIL image.
* **FVD input** (``compute_fvd.py``): each native-size frame ``convert('RGB')`` (RGBA read as
  above), each channel resized to 224×224 as a 32-bit float image (PIL mode ``F``, ``resample=3``:
  bicubic), ``/ 127.5 − 1``.
* **Means**: per view the mean over frames, then the sum over views divided by 4 (the script's
  four views), then the mean over objects (:mod:`.protocol`).

One deliberate difference: a frame identical to its truth has an infinite PSNR, which makes the
script's object mean infinite; here it counts 100 dB, as in the ``clean`` protocol.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import Tensor

from align4d_core.io.media import open_image

RESAMPLE = Image.Resampling.BICUBIC
"""``Image.resize``'s default filter for RGB images (Pillow ≥ 7), which the script relies on."""

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
"""torchmetrics' SSIM defaults (``kernel_size=11``, ``sigma=1.5``), which the script keeps."""

FVD_SIZE = 224
"""compute_fvd.py's ``output_size``."""


def open_rgb(data: bytes, uri: str) -> Image.Image:
    """An RGB image from PNG bytes, with the script's RGBA rule (alpha 0 → white, no blending)."""
    with open_image(uri, data) as image:
        has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
        if not has_alpha:
            return image.convert("RGB")
        rgba = np.array(image.convert("RGBA"))
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255
    return Image.fromarray(rgb, mode="RGB")


def resize(image: Image.Image, size: int | None) -> Image.Image:
    """``image.resize((size, size))`` as the image script calls it; None keeps the file's size."""
    return image if size is None else image.resize((size, size), RESAMPLE)


def to_uint8(images: list[Image.Image]) -> Tensor:
    """``(T, H, W, 3)`` uint8 of equal-size RGB images."""
    return torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR per frame of ``(T, H, W, 3)`` 0–255 frames, data range ``target.max() − target.min()``.

    torchmetrics computed this in float32 (``2 ln(range) − ln(MSE)``, times 10/ln 10); float64 here
    agrees to ~1e-5 dB. A constant target frame has range 0 and a PSNR of −inf, as in the script.
    """
    p, t = pred.double().flatten(1), target.double().flatten(1)
    mse = (p - t).pow(2).mean(dim=1)
    data_range = t.max(dim=1).values - t.min(dim=1).values
    return 10.0 * torch.log10(data_range.pow(2) / mse)


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM per frame of ``(T, H, W, 3)`` 0–255 frames, each with its own data range (see module).

    torchmetrics of the script's time (1.2) reflect-padded the image by 5, filtered it with the
    11-tap Gaussian and averaged the SSIM map without that 5-pixel border: exactly the pixels whose
    window lies inside the image, so the padding never counts and a 'valid' filtering of the image
    itself gives the same map. Since 1.5 (its PR #2721, September 2024) torchmetrics averages the
    whole padded map, about 0.001 apart at 512 px, so we do not call it.

    In float64, one frame at a time: in float32 the windowed variance of a flat 0–255 region (a
    white background) is rounding noise around 0 of either sign, and later torchmetrics clamps it at
    0, which biased SSIM by 0.00025 on frames a third white. SciPy's separable filtering in float64
    costs less than torchmetrics' float32 ``conv2d`` on a CPU (torch's float64 one is ~20× slower).
    """
    window = _gaussian_window()
    k1, k2 = 0.01, 0.03
    out = torch.empty(len(pred), dtype=torch.float64)
    for i in range(len(pred)):
        x = pred[i].double().numpy()
        y = target[i].double().numpy()
        data_range = max(float(x.max() - x.min()), float(y.max() - y.min()))
        c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
        mx, my, xx, yy, xy = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), window)
        sxx, syy, sxy = xx - mx * mx, yy - my * my, xy - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        out[i] = float(ssim_map.mean())
    return out


def _gaussian_window() -> np.ndarray:
    """torchmetrics' SSIM window: 11 taps, σ 1.5, normalised to sum 1 (its ``_gaussian``)."""
    half = (SSIM_WINDOW - 1) / 2
    gauss = np.exp(-0.5 * (np.arange(-half, half + 1) / SSIM_SIGMA) ** 2)
    return gauss / gauss.sum()


def _filter_valid(images: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``(..., H, W, C)`` filtered separably along H and W, kept where the window fits whole."""
    rows = ndimage.correlate1d(images, window, axis=-2, mode="reflect")
    both = ndimage.correlate1d(rows, window, axis=-3, mode="reflect")
    half = len(window) // 2
    return both[..., half:-half, half:-half, :]


def fvd_video(images: list[Image.Image]) -> Tensor:
    """``(1, 3, T, 224, 224)`` I3D input of native-size RGB frames, as compute_fvd.py builds it."""
    frames = []
    for image in images:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        channels = [
            np.asarray(Image.fromarray(rgb[..., c], mode="F").resize((FVD_SIZE, FVD_SIZE), resample=3))
            for c in range(3)
        ]
        frames.append(np.stack(channels, axis=-1))
    video = torch.from_numpy(np.stack(frames)).float() / 127.5 - 1.0
    return video.permute(3, 0, 1, 2).unsqueeze(0).contiguous()


def clip_processor(model: str | None, image_size: int):
    """The CLIPImageProcessor saved beside the CLIP weights, or the ViT-B/32 defaults for that size.

    openai/clip-vit-base-patch32's preprocessor_config.json is CLIPImageProcessor's defaults
    (shortest edge 224, centre crop 224, bicubic, CLIP's mean and std).
    """
    processor_class = _pil_clip_processor()
    if model is not None:
        try:
            return processor_class.from_pretrained(model, local_files_only=True)
        except (OSError, ValueError):
            pass
    return processor_class(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def _pil_clip_processor():
    """CLIP's PIL image processor: ``CLIPImageProcessorPil`` in transformers ≥ 5 (where
    ``CLIPImageProcessor`` means the torchvision backend), ``CLIPImageProcessor`` before, which was
    PIL-based when Consistent4D's script called it."""
    try:
        from transformers import CLIPImageProcessorPil
    except ImportError:
        try:
            from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
        except ImportError:
            from transformers import CLIPImageProcessor as CLIPImageProcessorPil
    return CLIPImageProcessorPil


def clip_pixels(processor, images: list[Image.Image]) -> Tensor:
    """CLIP's ``pixel_values`` of resized PIL images, as the image script computes them."""
    return processor(images=images, return_tensors="pt")["pixel_values"]
