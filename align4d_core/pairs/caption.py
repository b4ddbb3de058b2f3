"""The prompt of a quadruplet whose item gives none: an optional captioning model.

X4D pairs every image, video and 3D item with a text (paper Section III-E: "an image-to-prompt
tool", "an image-to-text model"). The prompt is part of the quadruplet, not an input of the
optimisation, so captioning is off by default (``caption.backend = "none"``: the manifest's prompt,
which may be absent) and a captioner is loaded only when asked for. ``"blip"`` runs a BLIP
captioning model through transformers (``BlipForConditionalGeneration``) on the pair's image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from align4d_core.config import CaptionConfig
from align4d_core.errors import InputError
from align4d_core.io.weights import load_component
from align4d_core.pairs.weights import ModelMissingError, free_memory, how_to_provide, model_location

__all__ = ["CAPTION_BACKENDS", "caption"]

CAPTION_BACKENDS = ("none", "blip")


def caption(rgb: Tensor, config: CaptionConfig, device: torch.device) -> str | None:
    """A caption of ``rgb (H, W, 3)``, or None with ``backend = "none"``."""
    if config.backend not in CAPTION_BACKENDS:
        raise InputError(
            f"unknown pairs.caption.backend {config.backend!r}; expected one of {', '.join(CAPTION_BACKENDS)}",
            field="caption",
        )
    if config.backend == "none":
        return None
    return _blip(rgb, config, torch.device(device))


def _blip(rgb: Tensor, config: CaptionConfig, device: torch.device) -> str:
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    setting = "pairs.caption.model"
    location = model_location(setting, config.model, marker="config.json")
    try:
        processor = BlipProcessor.from_pretrained(location, revision=config.revision)
    except OSError as error:
        raise ModelMissingError(
            f"{setting}: {config.model!r} cannot be loaded: {str(error).splitlines()[0]}. "
            f"{how_to_provide(setting, config.model)}",
            uri=config.model,
        ) from error
    # the processor is there, so the model is too: it must load whole (weights.load_component)
    model = (
        load_component(
            BlipForConditionalGeneration, location, None, what=f"{setting} {config.model!r}", revision=config.revision
        )
        .to(device)
        .eval()
    )
    try:
        image = Image.fromarray((rgb.float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy())
        inputs = processor(images=image, return_tensors="pt").to(device)
        with torch.inference_mode():
            tokens = model.generate(**inputs, max_new_tokens=config.max_tokens, do_sample=False)
        return processor.decode(tokens[0], skip_special_tokens=True).strip()
    finally:
        del model
        free_memory(device)
