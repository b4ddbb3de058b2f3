"""Text -> image: Stable Diffusion XL (paper Section III-E (a): "a textual prompt is first used to
generate an image via SDXL").

The prompt gets ``prompt_suffix`` (a single object on a plain white background), because the rest
of the pipeline needs an isolated object: the white-background mask rule, Shap-E's image encoder and
the optimizer's white renders all assume one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from align4d_core.config import TextToImageConfig
from align4d_core.errors import InputError
from align4d_core.pairs.weights import run_pipeline

__all__ = ["TextToImage"]


class TextToImage:
    """``TextToImage(config, device)(prompt)`` -> an image ``(H, W, 3)`` in [0, 1] (no mask yet)."""

    setting = "pairs.text_to_image.model"

    def __init__(self, config: TextToImageConfig, device: torch.device) -> None:
        self.config = config
        self.device = torch.device(device)

    def __call__(self, prompt: str) -> Tensor:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("an empty prompt cannot be turned into an image", field="prompt")
        from diffusers import StableDiffusionXLPipeline

        c = self.config
        if c.size % 8:
            raise InputError(f"pairs.text_to_image.size must be a multiple of 8, got {c.size}", field="text_to_image")

        def call(pipe) -> Tensor:
            generator = torch.Generator(device="cpu").manual_seed(c.seed)
            images = pipe(
                prompt=prompt.strip() + c.prompt_suffix,
                negative_prompt=c.negative_prompt or None,
                height=c.size,
                width=c.size,
                num_inference_steps=c.steps,
                guidance_scale=c.guidance_scale,
                generator=generator,
                output_type="pt",
            ).images
            return images[0].permute(1, 2, 0).float().clamp(0.0, 1.0).cpu()

        return run_pipeline(StableDiffusionXLPipeline, self.setting, c, self.device, call)
