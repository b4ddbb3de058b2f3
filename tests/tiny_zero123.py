"""Tiny random Zero123 models written file by file in the public ports' exact layouts.

Nothing here comes from align4d's loader: the folder names, ``model_index.json`` entries, config
fields and state-dict keys are the published facts, written out so that the loader is tested
against them rather than against itself.

* ``zero123-pipeline`` — ``ashawkey/zero123-xl-diffusers``, ``bennyguo/zero123-xl-diffusers``,
  ``ashawkey/stable-zero123-diffusers``. The pipeline file they ship (``zero123.py``, loaded by
  DreamGaussian4D's ``guidance/zero123_utils.py`` and threestudio's ``extern/zero123.py``) defines
  ``CLIPCameraProjection(ModelMixin, ConfigMixin)`` with ``@register_to_config`` fields
  ``embedding_dim=768, additional_embeddings=4`` and one layer ``self.proj = nn.Linear(772, 768)``;
  ``model_index.json`` names it ``["zero123", "CLIPCameraProjection"]`` (the error diffusers prints
  for it: "clip_camera_projection/zero123.py as defined in `model_index.json`",
  camenduru/dreamgaussian-colab#3) and the pipeline ``Zero123Pipeline``.
* ``zero1to3`` — ``kxic/zero123-xl``, ``kxic/stable-zero123``, made by kxhit/zero123-hf's
  ``scripts/convert_zero123_to_diffusers.py`` for diffusers' community ``pipeline_zero1to3.py``:
  ``CCProjection`` with ``in_channel=772, out_channel=768`` and ``self.projection``; the image encoder
  and feature extractor of ``lambdalabs/sd-image-variations-diffusers``; ``DDIMScheduler(beta_start=
  0.00085, beta_end=0.012, scaled_linear, steps_offset=1, clip_sample=False, set_alpha_to_one=False)``;
  no safety checker (``requires_safety_checker=False``); ``feature_extractor`` optional.

UNet, VAE and CLIP weights are the state dicts of diffusers' / transformers' own classes (the ports
were saved by them), written with safetensors (or ``torch.save`` for ``.bin`` files) under the
libraries' file names; CLIP's file also holds ``vision_model.embeddings.position_ids``, as the
2022 checkpoints of ``lambdalabs/sd-image-variations-diffusers`` do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

SIZE = 64  # guidance input size of the tiny model: 64 px images, 8x8 latents
CLIP_SIZE = 32  # the tiny CLIP's image size
PROJECTION_DIM = 32  # the tiny CLIP's projection_dim P = the UNet's cross-attention size: CLIPCameraProjection
# maps embedding_dim + 4 to embedding_dim, so the two are one number in that layout
CROSS_ATTENTION = 32
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
HUB_ID = "align4d-test/tiny-zero123"

TINY_UNET = {
    "sample_size": SIZE // 8,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": CROSS_ATTENTION,
    "attention_head_dim": 8,
}
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 8, 16, 16],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": SIZE,
    "scaling_factor": 0.18215,
}
TINY_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": CLIP_SIZE,
    "patch_size": 8,
    "projection_dim": PROJECTION_DIM,
    "hidden_act": "quick_gelu",
}

SCHEDULER_CONFIG = {  # kxhit/zero123-hf's converter; the ports share Zero123's training schedule
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.17.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
}
FEATURE_EXTRACTOR_CONFIG = {  # the 2022 CLIPFeatureExtractor format of sd-image-variations-diffusers
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

LAYOUTS = {
    "zero123-pipeline": {
        "model_index": {
            "_class_name": "Zero123Pipeline",
            "_diffusers_version": "0.20.0",
            "clip_camera_projection": ["zero123", "CLIPCameraProjection"],
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
        "projection": "clip_camera_projection",
        "projection_config": {
            "_class_name": "CLIPCameraProjection",
            "_diffusers_version": "0.20.0",
            "additional_embeddings": 4,
            "embedding_dim": CROSS_ATTENTION,
        },
        "projection_layer": "proj",
    },
    "zero1to3": {
        "model_index": {
            "_class_name": "Zero1to3StableDiffusionPipeline",
            "_diffusers_version": "0.17.0.dev0",
            "cc_projection": ["pipeline_zero1to3", "CCProjection"],
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
        "projection": "cc_projection",
        "projection_config": {
            "_class_name": "CCProjection",
            "_diffusers_version": "0.17.0.dev0",
            "in_channel": PROJECTION_DIM + 4,
            "out_channel": CROSS_ATTENTION,
        },
        "projection_layer": "projection",
    },
}
"""What a folder of each layout holds besides the shared components (unet, vae, image_encoder,
scheduler, feature_extractor): the index, and the projection's folder, config and layer name."""


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def _write_weights(folder: Path, stem: str, tensors: dict[str, torch.Tensor], fmt: str, variant: str | None) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    name = f"{stem}{'.' + variant if variant else ''}"
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    if fmt == "safetensors":
        save_file(tensors, str(folder / f"{name}.safetensors"))
    else:
        torch.save(tensors, folder / f"{name}.bin")


def write_port(
    folder,
    layout: str = "zero123-pipeline",
    *,
    fmt: str = "safetensors",
    variant: str | None = None,
    feature_extractor: bool = True,
    seed: int = 0,
) -> Path:
    """A tiny random Zero123 in ``layout``'s published files; weights in ``fmt`` ("safetensors"/"bin")."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    facts = LAYOUTS[layout]
    index = dict(facts["model_index"])
    if not feature_extractor:
        index["feature_extractor"] = [None, None]
    _write_json(folder / "model_index.json", index)
    torch.manual_seed(seed)
    diffusers_stem = "diffusion_pytorch_model"
    unet = UNet2DConditionModel(**TINY_UNET)
    _write_json(folder / "unet" / "config.json", {"_class_name": "UNet2DConditionModel", **TINY_UNET})
    _write_weights(folder / "unet", diffusers_stem, unet.state_dict(), fmt, variant)
    vae = AutoencoderKL(**TINY_VAE)
    _write_json(folder / "vae" / "config.json", {"_class_name": "AutoencoderKL", **TINY_VAE})
    _write_weights(folder / "vae", diffusers_stem, vae.state_dict(), fmt, variant)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP))
    _write_json(
        folder / "image_encoder" / "config.json",
        {"architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model", **TINY_CLIP},
    )
    positions = (TINY_CLIP["image_size"] // TINY_CLIP["patch_size"]) ** 2 + 1
    clip_state = {**clip.state_dict(), "vision_model.embeddings.position_ids": torch.arange(positions)[None]}
    _write_weights(
        folder / "image_encoder", "model" if fmt == "safetensors" else "pytorch_model", clip_state, fmt, variant
    )
    _write_json(folder / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)
    if feature_extractor:
        _write_json(folder / "feature_extractor" / "preprocessor_config.json", FEATURE_EXTRACTOR_CONFIG)
    projection = folder / facts["projection"]
    _write_json(projection / "config.json", facts["projection_config"])
    layer = facts["projection_layer"]
    linear = torch.nn.Linear(PROJECTION_DIM + 4, CROSS_ATTENTION)
    _write_weights(
        projection, diffusers_stem, {f"{layer}.weight": linear.weight, f"{layer}.bias": linear.bias}, fmt, variant
    )
    return folder


def save_tiny_zero123(folder, layout: str = "zero123-pipeline") -> Path:
    """The default fixture: a tiny Zero123 in ashawkey/zero123-xl-diffusers' layout."""
    return write_port(folder, layout)


def install_in_hub_cache(folder, cache, hub_id: str = HUB_ID) -> None:
    """Copy a model folder into a Hugging Face cache as the snapshot of ``hub_id``'s main branch."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(cache) / f"models--{hub_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


# --- broken variants, each what a user meets -----------------------------------------------------


def weight_file(folder, component: str) -> Path:
    (path,) = [p for p in Path(folder, component).iterdir() if p.suffix in (".safetensors", ".bin")]
    return path


def rewrite_weights(folder, component: str, change) -> None:
    """Apply ``change(dict) -> dict`` to a component's tensors and write them back in place."""
    from safetensors.torch import load_file, save_file

    path = weight_file(folder, component)
    tensors = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)
    tensors = {k: v.contiguous() for k, v in change(dict(tensors)).items()}
    if path.suffix == ".safetensors":
        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)


def rename_key(tensors: dict, old: str, new: str) -> dict:
    tensors[new] = tensors.pop(old)
    return tensors


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
