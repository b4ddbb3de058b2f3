"""CLIP image similarity and CLIP-F (ViT-B/32, transformers), with CLIP's preprocessing in torch.

* CLIP score (Consistent4D's ``compute_image_level_metrics.py``): the cosine similarity of the image
  embeddings (``get_image_features``: the projected pooled output) of a predicted frame and its
  ground-truth frame; averaged over frames, then views.
* CLIP-F (the paper's [65]): the cosine similarity of the embeddings of adjacent predicted frames,
  averaged over the T-1 pairs of a view, then over views. It measures temporal semantic
  consistency and needs no ground truth.

The preprocessing is CLIPImageProcessor's, written in torch because transformers' image processor
must not depend on torchvision here: resize the shorter side to the model's input size (224 for
ViT-B/32) with antialiased bicubic interpolation, centre crop, normalise with CLIP's mean and std.
The processor resizes a uint8 PIL image; we resize the float image and clamp to [0, 1], without the
8-bit rounding (a difference far below the fourth decimal of a CLIP score).

Weights load with ``from_pretrained`` from a hub id (from the local cache only, unless
``metrics.download``) or a local folder, as ``CLIPVisionModelWithProjection``: only the vision tower
and its projection are read from a full ``CLIPModel`` checkpoint.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from align4d_core.metrics.weights import MissingWeights

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""OpenAI CLIP's normalisation (CLIPImageProcessor's image_mean / image_std)."""


def load_clip(model: str, revision: str | None = None, download: bool = False):
    """``CLIPVisionModelWithProjection`` from a hub id or folder; raises :class:`MissingWeights` when it
    is not on this machine (and ``download`` is off) or does not hold the vision tower."""
    from transformers import AutoConfig, CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    hint = "set metrics.clip_model to a local folder, or metrics.download=true to fetch it"
    attempts = (True, False) if download else (True,)
    error: Exception | None = None
    for local_only in attempts:
        try:
            config = AutoConfig.from_pretrained(model, revision=revision, local_files_only=local_only)
            if getattr(config, "model_type", None) == "clip":  # a full CLIPModel checkpoint
                vision = config.vision_config
                vision.projection_dim = config.projection_dim
                config = vision
            verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
            hf_logging.set_verbosity_error()  # the text tower's weights are "unexpected": expected here
            hf_logging.disable_progress_bar()
            try:
                loaded, info = CLIPVisionModelWithProjection.from_pretrained(
                    model, config=config, revision=revision, local_files_only=local_only, output_loading_info=True
                )
            finally:
                hf_logging.set_verbosity(verbosity)
                if bars:
                    hf_logging.enable_progress_bar()
            break
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            error = exc
    else:
        if os.path.isdir(model):
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise MissingWeights(f"no CLIP weights in the folder {model} ({detail}); {hint}")
        where = "in the local Hugging Face cache" if not download else "in the local cache or on the hub"
        raise MissingWeights(f"no CLIP weights for {model!r} {where}; {hint}")
    absent = [k for k in info.get("missing_keys", []) if k.startswith(("vision_model.", "visual_projection."))]
    if absent or info.get("mismatched_keys"):
        bad = (absent or [str(k) for k in info["mismatched_keys"]])[:3]
        raise MissingWeights(f"{model!r} lacks CLIP vision weights ({', '.join(bad)}); {hint}")
    loaded.requires_grad_(False)
    return loaded.eval()


def preprocess(images: Tensor, size: int) -> Tensor:
    """``(N, H, W, 3)`` in [0, 1] → CLIP's ``(N, 3, size, size)`` pixel values."""
    x = images.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    if (h, w) != (size, size):
        new = (max(size, round(h * scale)), max(size, round(w * scale)))
        x = F.interpolate(x, size=new, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        x = x[..., top : top + size, left : left + size]
    mean = torch.tensor(CLIP_MEAN, device=x.device).reshape(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).reshape(1, 3, 1, 1)
    return (x - mean) / std


@torch.inference_mode()
def embed(model, frames: Tensor, batch: int) -> Tensor:
    """Unit-length CLIP image embeddings ``(T, D)`` of ``(T, H, W, 3)`` frames, in float64."""
    device = next(model.parameters()).device
    size = int(model.config.image_size)
    out = []
    for i in range(0, len(frames), batch):
        pixels = preprocess(frames[i : i + batch].to(device), size)
        out.append(model(pixel_values=pixels).image_embeds.double().cpu())
    return F.normalize(torch.cat(out), dim=-1)


def clip_similarity(pred: Tensor, target: Tensor) -> Tensor:
    """Cosine similarity per frame of two sets of unit embeddings ``(T, D)``."""
    return (pred * target).sum(dim=-1)


def clip_f(pred: Tensor) -> Tensor:
    """Cosine similarity of adjacent frames' unit embeddings, ``(T - 1,)``."""
    return (pred[1:] * pred[:-1]).sum(dim=-1)
