"""The learned prior's networks: Zero123's parts at a size that trains on a CPU.

The same classes as the published Zero123 (diffusers' ``UNet2DConditionModel`` with 8 input
channels and ``AutoencoderKL``, transformers' ``CLIPVisionModelWithProjection``, the one-layer
camera projection), only smaller: 64 px images, a VAE with three down-samplings (8×8×4 latents), a
three-level UNet, a two-layer CLIP ViT. The projection maps [CLIP embedding; pose] to the UNet's
cross-attention size, which is the CLIP projection size, as ``CLIPCameraProjection`` requires; it
starts as Zero123's did: identity on the embedding, zero on the pose (the commented-out
``load_cc_projection`` of diffusers' community ``pipeline_zero1to3.py``).
"""

from __future__ import annotations

import torch

from align4d_core.config import PriorModelConfig
from align4d_core.guidance.zero123_layout import ZERO123_PIPELINE, CameraProjection, Zero123Parts
from align4d_core.guidance.zero123_xl import CLIP_MEAN, CLIP_STD, POSE_DIM, SCHEDULER


def vae_config(config: PriorModelConfig) -> dict:
    levels = len(config.vae_channels)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": list(config.vae_channels),
        "layers_per_block": 1,
        "latent_channels": config.latent_channels,
        "norm_num_groups": 16,
        "sample_size": config.size,
        "scaling_factor": 1.0,
    }


def unet_config(config: PriorModelConfig) -> dict:
    levels = len(config.unet_channels)
    factor = 2 ** (len(config.vae_channels) - 1)
    return {
        "sample_size": config.size // factor,
        "in_channels": 2 * config.latent_channels,
        "out_channels": config.latent_channels,
        "down_block_types": ["CrossAttnDownBlock2D"] * (levels - 1) + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (levels - 1),
        "block_out_channels": list(config.unet_channels),
        "layers_per_block": 1,
        "cross_attention_dim": config.embedding,
        "attention_head_dim": 8,
        "norm_num_groups": 16,
    }


def clip_config(config: PriorModelConfig) -> dict:
    return {
        "hidden_size": config.clip_hidden,
        "intermediate_size": 2 * config.clip_hidden,
        "num_hidden_layers": config.clip_layers,
        "num_attention_heads": 4,
        "image_size": config.clip_size,
        "patch_size": config.clip_patch,
        "projection_dim": config.embedding,
        "hidden_act": "quick_gelu",
    }


def feature_extractor_config(config: PriorModelConfig) -> dict:
    return {
        "crop_size": {"height": config.clip_size, "width": config.clip_size},
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "resample": 3,
        "size": {"shortest_edge": config.clip_size},
    }


def build_prior(config: PriorModelConfig, seed: int = 0) -> Zero123Parts:
    """Randomly initialised parts of the prior, deterministic for a seed."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**vae_config(config))
        unet = UNet2DConditionModel(**unet_config(config))
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**clip_config(config)))
        projection = CameraProjection(config.embedding + POSE_DIM, config.embedding)
    with torch.no_grad():
        projection.linear.weight.zero_()
        projection.linear.weight[:, : config.embedding] = torch.eye(config.embedding)
        projection.linear.bias.zero_()
    return Zero123Parts(
        layout=ZERO123_PIPELINE,
        image_encoder=encoder,
        unet=unet,
        vae=vae,
        projection=projection,
        scheduler=DDIMScheduler(**SCHEDULER),
        feature_extractor=CLIPImageProcessor(**feature_extractor_config(config)),
        folder="(the prior, in training)",
    )
