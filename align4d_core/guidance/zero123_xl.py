"""The published Zero123-XL architecture, part by part, as diffusers/transformers configs.

Zero123 (Liu et al., ICCV 2023; zero123-xl is the same network trained on Objaverse-XL) is Stable
Diffusion 1.x's image-variation model with an 8-channel UNet input (noisy latent + conditioning
latent) and a 772 → 768 camera projection. These are the values of the ports' configs, which the
converter that made them derived from Zero123's own ``configs/sd-objaverse-finetune-c_concat-256.yaml``
(kxhit/zero123-hf ``scripts/convert_zero123_to_diffusers.py``: model_channels 320, channel_mult
1/2/4/4, attention at the first three levels, 2 res blocks, 8 heads, context 768, 256 px images,
linear_start 0.00085, linear_end 0.012), and the CLIP ViT-L/14 image encoder both ports take from
``lambdalabs/sd-image-variations-diffusers``.

They are used to build a full-size random model (``benchmarks/optimize.py --zero123-size full``:
time and memory are real, quality is meaningless) and as the reference sizes of the fit checks.
"""

from __future__ import annotations

import torch

UNET = {
    "sample_size": 32,  # 256 px images, 32x32 latents
    "in_channels": 8,  # noisy latent + conditioning-image latent
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}

VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 256,
    "scaling_factor": 0.18215,
}

IMAGE_ENCODER = {  # CLIP ViT-L/14 vision tower with its 768-d projection
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}

SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FEATURE_EXTRACTOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "image_mean": list(CLIP_MEAN),
    "image_std": list(CLIP_STD),
    "resample": 3,  # bicubic
    "size": {"shortest_edge": 224},
}

POSE_DIM = 4
"""[Δpolar, sin Δazimuth, cos Δazimuth, Δradius] (Stable Zero123: the condition's polar angle last)."""


def random_parts(seed: int = 0):
    """A full-size Zero123-XL with random weights (time and memory real, outputs meaningless).

    Built from the configs above, so it has the published sizes (UNet ≈ 860M parameters, CLIP
    ViT-L/14 ≈ 300M, VAE ≈ 84M); for measuring the method's cost where no weights can be had.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from align4d_core.guidance.zero123_layout import ZERO123_PIPELINE, CameraProjection, Zero123Parts

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**UNET)
        vae = AutoencoderKL(**VAE)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**IMAGE_ENCODER))
        projection = CameraProjection(IMAGE_ENCODER["projection_dim"] + POSE_DIM, UNET["cross_attention_dim"])
    return Zero123Parts(
        layout=ZERO123_PIPELINE,
        image_encoder=encoder,
        unet=unet,
        vae=vae,
        projection=projection,
        scheduler=DDIMScheduler(**SCHEDULER),
        feature_extractor=CLIPImageProcessor(**FEATURE_EXTRACTOR),
        folder="(random full-size Zero123-XL, built in memory)",
    )
