"""A tiny random Zero123, saved in the public diffusers ports' layout, for tests that need one.

Built from configs (no weights exist on the test machines) and loaded through the same
``from_pretrained`` code as real weights.
"""

from __future__ import annotations

import json

import torch

SIZE = 64  # guidance input size of the tiny model: 64 px images, 8x8 latents
CLIP_SIZE = 32  # the tiny CLIP's image size
PROJECTION_DIM = 16  # the tiny CLIP's projection_dim P; CameraProjection is (P + 4) -> 32
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
HUB_ID = "align4d-test/tiny-zero123"


def save_tiny_zero123(folder) -> None:
    """A random Zero123 in the public ports' layout, small enough to run in milliseconds."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from align4d_core.guidance import CameraProjection

    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=SIZE // 8,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
    ).save_pretrained(folder / "unet")
    AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=SIZE,
    ).save_pretrained(folder / "vae")
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=CLIP_SIZE,
        patch_size=8,
        projection_dim=PROJECTION_DIM,
    )
    CLIPVisionModelWithProjection(vision).save_pretrained(folder / "image_encoder")
    DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    ).save_pretrained(folder / "scheduler")
    CameraProjection(PROJECTION_DIM + 4, 32).save_pretrained(folder / "clip_camera_projection")
    # the ports name the class CCProjection and keep the old feature-extractor config format
    projection_config = folder / "clip_camera_projection" / "config.json"
    saved = json.loads(projection_config.read_text())
    projection_config.write_text(json.dumps({**saved, "_class_name": "CCProjection"}))
    (folder / "feature_extractor").mkdir()
    (folder / "feature_extractor" / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "crop_size": CLIP_SIZE,
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": CLIP_MEAN,
                "image_std": CLIP_STD,
                "resample": 3,
                "size": CLIP_SIZE,
            }
        )
    )
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "Zero1to3StableDiffusionPipeline",
                "clip_camera_projection": ["pipeline_zero1to3", "CCProjection"],
                "feature_extractor": ["transformers", "CLIPImageProcessor"],
                "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
                "scheduler": ["diffusers", "DDIMScheduler"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            }
        )
    )
