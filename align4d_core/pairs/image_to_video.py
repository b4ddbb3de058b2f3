"""Image -> video: Stable Video Diffusion (paper Section III-E: "SVD ... to produce a video").

SVD was trained at 1024x576; object images are square. Stretching the image to 16:9 would distort
the object and the motion, so the image is padded with white to the model's aspect (centred), the
video is generated at ``width`` x ``height``, and every frame is cropped back to the region the
image occupied. Frame 0 then shows the image where the image was, which is what the video-3D pair
needs (the object from the same image must line up with the video's first frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from align4d_core.config import ImageToVideoConfig
from align4d_core.errors import InputError
from align4d_core.pairs.weights import run_pipeline

__all__ = ["ImageToVideo", "letterbox"]


def letterbox(rgb: Tensor, width: int, height: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """``rgb (H, W, 3)`` scaled to fit ``width`` x ``height`` and padded with white, centred; and the
    box ``(top, left, box_height, box_width)`` the image occupies."""
    h, w = rgb.shape[:2]
    scale = min(width / w, height / h)
    box_w, box_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = (
        F.interpolate(
            rgb.permute(2, 0, 1)[None], size=(box_h, box_w), mode="bicubic", align_corners=False, antialias=True
        )[0]
        .permute(1, 2, 0)
        .clamp(0.0, 1.0)
    )
    canvas = torch.ones(height, width, 3, dtype=rgb.dtype)
    top, left = (height - box_h) // 2, (width - box_w) // 2
    canvas[top : top + box_h, left : left + box_w] = resized
    return canvas, (top, left, box_h, box_w)


class ImageToVideo:
    """``ImageToVideo(config, device)(rgb)`` -> frames ``(T, h, w, 3)`` in [0, 1], T = ``config.frames``,
    frame size = the image's region of the ``width`` x ``height`` video (no masks yet)."""

    setting = "pairs.image_to_video.model"

    def __init__(self, config: ImageToVideoConfig, device: torch.device) -> None:
        self.config = config
        self.device = torch.device(device)

    def __call__(self, rgb: Tensor) -> Tensor:
        from diffusers import StableVideoDiffusionPipeline
        from PIL import Image

        c = self.config
        if c.frames < 2:
            raise InputError(f"pairs.image_to_video.frames must be at least 2, got {c.frames}", field="image_to_video")
        if c.width % 8 or c.height % 8:
            raise InputError(
                f"pairs.image_to_video width and height must be multiples of 8, got {c.width}x{c.height}",
                field="image_to_video",
            )
        canvas, (top, left, box_h, box_w) = letterbox(rgb.float().cpu(), c.width, c.height)
        image = Image.fromarray((canvas * 255.0).round().to(torch.uint8).numpy())

        def call(pipe) -> Tensor:
            generator = torch.Generator(device="cpu").manual_seed(c.seed)
            frames = pipe(
                image,
                height=c.height,
                width=c.width,
                num_frames=c.frames,
                num_inference_steps=c.steps,
                min_guidance_scale=c.min_guidance_scale,
                max_guidance_scale=c.max_guidance_scale,
                fps=c.fps,
                motion_bucket_id=c.motion_bucket_id,
                noise_aug_strength=c.noise_aug_strength,
                decode_chunk_size=c.decode_chunk_size,
                generator=generator,
                output_type="pt",
            ).frames
            return frames[0].permute(0, 2, 3, 1).float().clamp(0.0, 1.0).cpu()  # (T, H, W, 3)

        video = run_pipeline(StableVideoDiffusionPipeline, self.setting, c, self.device, call)
        return video[:, top : top + box_h, left : left + box_w].contiguous()
