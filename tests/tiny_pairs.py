"""Tiny random pair-generation pipelines (SDXL, SVD, Shap-E, BLIP), saved like the real ones.

Built from configs the way diffusers' own pipeline tests build their dummy components (tiny UNets,
VAEs, CLIP encoders, a one-layer prior), saved with ``save_pretrained`` and loaded back through the
same ``from_pretrained`` code as real weights, with the hub offline. No weights exist on the test
machines, and these run in milliseconds.

Two pieces have no tiny public form and are made here:

* a CLIP tokenizer: a byte-level BPE vocabulary of the 256 byte symbols (with and without the
  end-of-word mark) and no merges, so any prompt tokenizes (one token per character);
* Shap-E's marching-cubes table: ``MeshDecoder`` keeps it in two buffers (``cases``, ``masks``) that
  the real checkpoint fills; a renderer built from its config has them all zero and would never
  produce a surface. :func:`marching_cubes_table` computes a table in Shap-E's corner and edge
  numbering from first principles (segments on each cube face, ambiguous faces cutting off the
  inside corners, chained into loops and fanned into triangles; at most 5 triangles a case, the
  buffers' width).
"""

from __future__ import annotations

from pathlib import Path

import torch

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
SDXL_SIZE = 32  # image size of the tiny SDXL (16x16 latents)
SVD_SIZE = 32  # frame size of the tiny SVD
SHAP_E_GRID = 24  # marching-cubes grid of the tiny Shap-E


def byte_symbols() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values."""
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def tiny_clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in byte_symbols():
        vocab[symbol] = len(vocab)
    for symbol in byte_symbols():
        vocab[symbol + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def save_tiny_sdxl(folder: Path) -> Path:
    """A StableDiffusionXLPipeline of ~0.5 MB (diffusers' test components, smaller widths)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=SDXL_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 * addition_time_embed_dim + the pooled text embedding (32)
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, steps_offset=1, beta_schedule="scaled_linear", timestep_spacing="leading"
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        sample_size=SDXL_SIZE,
        norm_num_groups=8,
    )
    text = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=600,
        projection_dim=32,
    )
    tokenizer = tiny_clip_tokenizer()
    StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text),
        text_encoder_2=CLIPTextModelWithProjection(text),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    ).save_pretrained(folder)
    return folder


def save_tiny_svd(folder: Path) -> Path:
    """A StableVideoDiffusionPipeline (diffusers' test components; the CLIP encoder at 224 px with
    32 px patches, because the pipeline resizes the image to 224 for it)."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=SVD_SIZE // 2,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,  # fps, motion bucket, noise aug
    )
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        latent_channels=4,
    )
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=224,
            intermediate_size=37,
            patch_size=32,
        )
    )
    StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224, image_mean=CLIP_MEAN, image_std=CLIP_STD),
    ).save_pretrained(folder)
    return folder


def marching_cubes_table() -> tuple[torch.Tensor, torch.Tensor]:
    """``cases (256, 5, 3)`` edge indices and ``masks (256, 5)`` in Shap-E's numbering.

    Corner bit ``x + 2y + 4z`` of the cube (set = inside, field > 0); edges 0-3 run along x at
    (y, z) = (0,0), (1,0), (0,1), (1,1), edges 4-7 along y at (x, z), edges 8-11 along z at (x, y),
    as ``diffusers.pipelines.shap_e.renderer._create_flat_edge_indices`` lays them out.
    """

    def corner(x: int, y: int, z: int) -> int:
        return x + 2 * y + 4 * z

    edges = [(corner(0, y, z), corner(1, y, z)) for y, z in ((0, 0), (1, 0), (0, 1), (1, 1))]
    edges += [(corner(x, 0, z), corner(x, 1, z)) for x, z in ((0, 0), (1, 0), (0, 1), (1, 1))]
    edges += [(corner(x, y, 0), corner(x, y, 1)) for x, y in ((0, 0), (1, 0), (0, 1), (1, 1))]
    edge_of = {frozenset(e): i for i, e in enumerate(edges)}
    faces = []
    for axis in range(3):
        a, b = [k for k in range(3) if k != axis]
        for side in (0, 1):
            ring = []
            for u, v in ((0, 0), (1, 0), (1, 1), (0, 1)):
                point = [0, 0, 0]
                point[axis], point[a], point[b] = side, u, v
                ring.append(corner(*point))
            faces.append(ring)

    cases = torch.zeros(256, 5, 3, dtype=torch.long)
    masks = torch.zeros(256, 5, dtype=torch.bool)
    for bits in range(256):
        inside = [(bits >> c) & 1 for c in range(8)]
        segments = []
        for ring in faces:
            ring_edges = [edge_of[frozenset((ring[i], ring[(i + 1) % 4]))] for i in range(4)]
            crossing = [inside[ring[i]] != inside[ring[(i + 1) % 4]] for i in range(4)]
            if sum(crossing) == 2:
                segments.append(tuple(e for e, c in zip(ring_edges, crossing) if c))
            elif sum(crossing) == 4:  # ambiguous face: cut off each inside corner
                segments += [(ring_edges[(i - 1) % 4], ring_edges[i]) for i in range(4) if inside[ring[i]]]
        neighbours: dict[int, list[int]] = {}
        for p, q in segments:
            neighbours.setdefault(p, []).append(q)
            neighbours.setdefault(q, []).append(p)
        triangles, seen = [], set()
        for start in sorted(neighbours):
            if start in seen:
                continue
            loop, previous, current = [start], None, start
            seen.add(start)
            while True:
                step = (
                    neighbours[current][0]
                    if previous is None
                    else next(n for n in neighbours[current] if n != previous)
                )
                if step == start:
                    break
                loop.append(step)
                seen.add(step)
                previous, current = current, step
            triangles += [(loop[0], loop[i], loop[i + 1]) for i in range(1, len(loop) - 1)]
        for i, triangle in enumerate(triangles):
            cases[bits, i] = torch.tensor(triangle)
            masks[bits, i] = True
    return cases, masks


def save_tiny_shap_e(folder: Path) -> Path:
    """A ShapEImg2ImgPipeline (diffusers' test components) with a marching-cubes table."""
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEImg2ImgPipeline
    from diffusers.pipelines.shap_e.renderer import ShapERenderer
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=16,
            image_size=32,
            projection_dim=16,
            intermediate_size=24,
            num_attention_heads=2,
            num_hidden_layers=1,
            patch_size=8,
        )
    )
    processor = CLIPImageProcessor(
        crop_size=32,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
        size=32,
    )
    prior = PriorTransformer(
        num_attention_heads=2,
        attention_head_dim=16,
        embedding_dim=16,
        num_embeddings=32,
        embedding_proj_dim=16,
        time_embed_dim=64,
        num_layers=1,
        clip_embed_dim=32,
        additional_embeddings=0,
        time_embed_act_fn="gelu",
        norm_in_type="layer",
        embedding_proj_norm_type="layer",
        encoder_hid_proj_type=None,
        added_emb_type=None,
    )
    renderer = ShapERenderer(
        param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)), d_latent=16, d_hidden=8, n_output=12, background=(0.1, 0.1, 0.1)
    )
    cases, masks = marching_cubes_table()
    renderer.mesh_decoder.cases.copy_(cases)
    renderer.mesh_decoder.masks.copy_(masks)
    scheduler = HeunDiscreteScheduler(
        beta_schedule="exp",
        num_train_timesteps=1024,
        prediction_type="sample",
        use_karras_sigmas=True,
        clip_sample=True,
        clip_sample_range=1.0,
    )
    ShapEImg2ImgPipeline(
        prior=prior, image_encoder=encoder, image_processor=processor, scheduler=scheduler, shap_e_renderer=renderer
    ).save_pretrained(folder)
    return folder


def save_tiny_blip(folder: Path) -> Path:
    """A BLIP captioner (BlipForConditionalGeneration + processor) with a 40-word vocabulary."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "[DEC]",
        *"abcdefghijklmnopqrstuvwxyz",
        "cat",
        "object",
        "on",
        "white",
        "red",
        "toy",
    ]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, bos_token="[DEC]")
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    ).save_pretrained(folder)
    torch.manual_seed(0)
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(words),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            bos_token_id=words.index("[DEC]"),
            sep_token_id=3,
            pad_token_id=0,
            max_position_embeddings=64,
            encoder_hidden_size=32,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
    )
    BlipForConditionalGeneration(config).save_pretrained(folder)
    return folder


def tiny_pairs_settings(models: dict[str, Path], **overrides) -> dict:
    """``pairs`` settings that point every generator at the tiny models, with 1-2 steps each."""
    settings = {
        "text_to_image": {"model": str(models["sdxl"]), "steps": 2, "size": SDXL_SIZE},
        "image_to_video": {
            "model": str(models["svd"]),
            "steps": 2,
            "frames": 4,
            "width": SVD_SIZE,
            "height": SVD_SIZE,
            "decode_chunk_size": 4,
        },
        "image_to_3d": {"model": str(models["shap_e"]), "steps": 2, "grid_size": SHAP_E_GRID},
        "front_view": {"size": 32, "mesh_samples": 512},
    }
    for section, values in overrides.items():
        settings[section] = {**settings.get(section, {}), **values}
    return settings


def save_all(root: Path) -> dict[str, Path]:
    """Every tiny model under ``root``; returns their folders by name."""
    return {
        "sdxl": save_tiny_sdxl(root / "sdxl"),
        "svd": save_tiny_svd(root / "svd"),
        "shap_e": save_tiny_shap_e(root / "shap_e"),
        "blip": save_tiny_blip(root / "blip"),
    }
