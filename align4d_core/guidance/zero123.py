"""Zero123 guidance: SDS (eq. 1) for L_mot (eq. 7) and L_geo (eq. 8), and the MAOD probe (eq. 5, 11).

Built from diffusers/transformers components, loaded with ``from_pretrained`` from a hub id or a
local folder in the layout of the public diffusers ports (ashawkey/zero123-xl-diffusers,
ashawkey/stable-zero123-diffusers): ``feature_extractor/`` (CLIP image processor),
``image_encoder/`` (CLIP vision model with projection), ``unet/`` (8 input channels: noisy latent +
conditioning-image latent), ``vae/``, ``scheduler/`` and ``clip_camera_projection/``
(:class:`CameraProjection`). diffusers has no Zero123 pipeline class and ``custom_pipeline=`` would
fetch code from the network, so the pieces are assembled here.

The conditioning follows DreamGaussian4D's ``guidance/zero123_utils.py``: the condition image is
resized to ``input_size``; its CLIP ``image_embeds`` and the camera pose are projected to one
cross-attention token; its VAE posterior mode (unscaled) is concatenated to the noisy latent.
Classifier-free guidance uses zeros for both the token and the conditioning latent.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import constants as hub_constants
from torch import Tensor
from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

from ..config import GuidanceConfig
from ..errors import InputError
from .base import ViewDelta

CAMERA_EMBEDDINGS = ("zero123", "stable")
COMPONENTS = ("feature_extractor", "image_encoder", "unet", "vae", "scheduler", "clip_camera_projection")
PROBE_AZIMUTHS = (-90.0, 0.0, 90.0, 180.0)  # eq. 5
FIXED_DISTANCE_PROBE_AZIMUTHS = (-90.0, 0.0, 90.0)  # eq. 11
CHUNK = 16
"""Samples per VAE/UNet call (the UNet sees twice as many with CFG): bounds peak memory when ODA
probes a whole sweep of distances at once."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class MissingWeightsError(InputError):
    """The Zero123 weights named by ``guidance.model`` cannot be loaded here."""


class CameraProjection(ModelMixin, ConfigMixin):
    """Zero123's projection of [CLIP image embedding; pose] to the UNet's cross-attention token.

    Same layout as the public ports' ``clip_camera_projection/`` (their ``CCProjection``: one
    linear layer, 772 → 768 for CLIP ViT-L/14), so their ``projection.weight``/``projection.bias``
    load unchanged.
    """

    @register_to_config
    def __init__(self, in_channel: int = 772, out_channel: int = 768) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(in_channel, out_channel)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x)


def zero123_pose(delta: ViewDelta, embedding: str) -> Tensor:
    """Zero123's camera vector (B, 4) for a view change given in align4d's convention (DESIGN.md §4).

    Zero123 measures the polar angle from the top, so a target ``Δelevation`` degrees higher has
    ``Δpolar = -Δelevation``; its azimuth grows the way ours does (DreamGaussian4D passes kiui's,
    which grows like ours). ``"zero123"`` (zero123 / zero123-xl): [Δpolar, sin Δaz, cos Δaz, Δradius],
    angles in radians, Δradius in object-distance units. ``"stable"`` (Stable Zero123): the last entry
    is the condition's polar angle instead, π/2 because the condition (a video frame, or eq. 8's
    same-view reference taken as the hypothetical front view) is at elevation 0; as in
    DreamGaussian4D, Stable Zero123 gets no Δradius.
    """
    if embedding not in CAMERA_EMBEDDINGS:
        choices = ", ".join(CAMERA_EMBEDDINGS)
        raise ValueError(f"unknown camera embedding {embedding!r}; choose one of {choices}")
    polar = torch.deg2rad(-delta.elevation.float())
    azimuth = torch.deg2rad(delta.azimuth.float())
    if embedding == "zero123":
        last = delta.radius.float()
    else:
        last = torch.full_like(polar, math.pi / 2)
    return torch.stack([polar, torch.sin(azimuth), torch.cos(azimuth), last], dim=-1)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``"auto"``: float16 on CUDA (DreamGaussian4D runs Zero123 in fp16), float32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"unknown guidance dtype {name!r}; choose 'auto' or one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


# --- loading --------------------------------------------------------------------------------------


def _how_to_provide(model: str) -> str:
    hub_id = model if _HUB_ID.match(model) else "ashawkey/zero123-xl-diffusers"
    return (
        f"On a machine with internet run `huggingface-cli download {hub_id} --local-dir DIR` "
        "(`hf download` in recent huggingface_hub), copy DIR here and set guidance.model to DIR; "
        "or use guidance.backend='anchor', which needs no weights."
    )


def _check_model_location(model: str) -> None:
    """Fail early, with the fix, for a folder that lacks a component or a path that does not exist."""
    if not os.path.isdir(model):
        if not _HUB_ID.match(model):
            raise MissingWeightsError(
                f"guidance.model {model!r} is neither an existing folder nor a hub id. {_how_to_provide(model)}",
                uri=model,
            )
        return
    missing = [name for name in COMPONENTS if not os.path.isdir(os.path.join(model, name))]
    if missing:
        raise MissingWeightsError(
            f"the Zero123 folder lacks {', '.join(f'{name}/' for name in missing)} (expected the "
            f"diffusers layout {', '.join(f'{name}/' for name in COMPONENTS)}). {_how_to_provide(model)}",
            uri=model,
        )


def _load(loader, config: GuidanceConfig, subfolder: str, **kwargs):
    """``loader.from_pretrained(model, subfolder=...)``; a failure names the model and the fix."""
    try:
        return loader.from_pretrained(config.model, subfolder=subfolder, revision=config.revision,
                                      local_files_only=config.local_files_only, **kwargs)  # fmt: skip
    except OSError as error:  # diffusers and transformers report missing files and repos as OSError
        where = "folder" if os.path.isdir(config.model) else "model (hub id)"
        revision = f" at revision {config.revision!r}" if config.revision else ""
        offline = ""
        if hub_constants.HF_HUB_OFFLINE or config.local_files_only:
            offline = " (HF_HUB_OFFLINE is set: only the local cache was searched)"
        raise MissingWeightsError(
            f"Zero123 {where} {config.model!r}{revision}: {subfolder}/ is not available{offline}: "
            f"{str(error).rstrip('.')}. {_how_to_provide(config.model)}",
            uri=config.model,
        ) from error


def _frozen(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model


# --- the guidance ---------------------------------------------------------------------------------


@dataclass
class _Embedded:
    """Condition images as Zero123 sees them: CLIP embeddings and VAE conditioning latents."""

    image_embeds: Tensor  # (B, P)
    latents: Tensor  # (B, 4, h, w), posterior mode, unscaled

    def select(self, index: Tensor) -> "_Embedded":
        return _Embedded(self.image_embeds[index], self.latents[index])


@dataclass
class Condition:
    """What the UNet is conditioned on, per sample."""

    tokens: Tensor  # (B, 1, C) projected [image_embeds; pose]
    latents: Tensor  # (B, 4, h, w)


@dataclass
class SDSStep:
    """One SDS evaluation (eq. 1), kept whole so that tests can check it."""

    loss: Tensor  # (B,) 0.5·‖z − sg(z − grad)‖², so ∂loss_b/∂z_b = grad_b
    timesteps: Tensor  # (B,) τ
    noise: Tensor  # (B, 4, h, w) ε
    noise_pred: Tensor  # (B, 4, h, w) ε̂ after classifier-free guidance
    grad: Tensor  # (B, 4, h, w) w(τ)(ε̂ − ε), w(τ) = 1 − ᾱ_τ


class Zero123Guidance:
    """Zero123 (or Stable Zero123) as Align4D's multiview prior."""

    name = "zero123"

    def __init__(self, config: GuidanceConfig, device: torch.device | str) -> None:
        if config.camera_embedding not in CAMERA_EMBEDDINGS:
            choices = ", ".join(CAMERA_EMBEDDINGS)
            raise ValueError(f"unknown camera embedding {config.camera_embedding!r}; choose one of {choices}")
        self.config = config
        self.device = torch.device(device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        _check_model_location(config.model)
        self.feature_extractor = _load(AutoImageProcessor, config, "feature_extractor")
        encoder = _load(CLIPVisionModelWithProjection, config, "image_encoder")
        self.image_encoder = _frozen(encoder.to(self.dtype), self.device)
        self.unet = _frozen(_load(UNet2DConditionModel, config, "unet", torch_dtype=self.dtype), self.device)
        self.vae = _frozen(_load(AutoencoderKL, config, "vae", torch_dtype=self.dtype), self.device)
        projection = _load(CameraProjection, config, "clip_camera_projection", torch_dtype=self.dtype)
        self.projection = _frozen(projection, self.device)
        self.scheduler = _load(DDIMScheduler, config, "scheduler")  # DDIM or DDPM config: only ᾱ is used
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device, torch.float32)
        steps = self.scheduler.config.num_train_timesteps
        self.min_step, self.max_step = int(steps * config.t_range[0]), int(steps * config.t_range[1])
        self.probe_azimuths = FIXED_DISTANCE_PROBE_AZIMUTHS if config.fixed_distance else PROBE_AZIMUTHS
        self._frames: _Embedded | None = None

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, h, w) of the latent of an ``input_size`` image."""
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        size = self.config.input_size // factor
        return (self.vae.config.latent_channels, size, size)

    # --- the Guidance interface ---------------------------------------------------------------

    def set_frames(self, frames: Tensor) -> None:
        """Embed every video frame (T, H, W, 3) once; L_mot and the probe index into them."""
        self._frames = self._embed(frames)

    def motion_loss(
        self, renders: Tensor, frame_index: Tensor, delta: ViewDelta, generator: torch.Generator
    ) -> Tensor:
        """L_mot (eq. 7), (B,): SDS of each render conditioned on its video frame I_t and view ``delta``."""
        condition = self._condition(self._frame_embeddings(frame_index), delta)
        return self.sds(self._encode(renders, generator), condition, generator).loss

    def geometry_loss(self, renders: Tensor, references: Tensor, generator: torch.Generator) -> Tensor:
        """L_geo (eq. 8), (B,): SDS conditioned on the same-view render of the 3D input, Δpose 0."""
        if references.shape[0] != renders.shape[0]:
            raise ValueError(f"{renders.shape[0]} renders but {references.shape[0]} references")
        delta = ViewDelta.zeros(renders.shape[0], device=self.device)
        condition = self._condition(self._embed(references), delta)
        return self.sds(self._encode(renders, generator), condition, generator).loss

    @torch.no_grad()
    def probe(
        self, renders: Tensor, frame_index: Tensor, delta: ViewDelta, timesteps: tuple[int, ...], noise: Tensor
    ) -> Tensor:
        """The MAOD probe (eq. 5, 11), (B,): (1/|T|) Σ_τ w(τ)·mean‖ε̂(z_τ; I, c, τ) − ε_fix‖².

        Deterministic: the render latents are the VAE posterior mode and every sample and timestep
        shares ``noise``, so the curve over distances varies only with the renders.
        """
        if not timesteps:
            raise ValueError("the probe needs at least one timestep (the paper uses 700, 800, 900)")
        steps = self.scheduler.config.num_train_timesteps
        if not all(0 <= int(tau) < steps for tau in timesteps):
            raise ValueError(f"probe timesteps must lie in [0, {steps}), got {timesteps}")
        condition = self._condition(self._frame_embeddings(frame_index), delta)
        latents = self._encode(renders, None)
        noise = noise.to(self.device, latents.dtype).expand_as(latents)
        total = torch.zeros(latents.shape[0], device=self.device)
        for tau in timesteps:
            t = torch.full((latents.shape[0],), int(tau), dtype=torch.long, device=self.device)
            noisy = self.scheduler.add_noise(latents, noise, t)
            noise_pred = self.predict_noise(noisy, t, condition, self.config.guidance_scale)
            error = (noise_pred.float() - noise.float()).square().flatten(1).mean(dim=1)
            total += (1.0 - self.alphas_cumprod[int(tau)]) * error
        return total / len(timesteps)

    def probe_noise(self, generator: torch.Generator) -> Tensor:
        """ε_fix of eq. 5: one latent-shaped normal tensor (1, 4, input_size/8, input_size/8)."""
        return randn_tensor((1, *self.latent_shape), generator=generator, device=self.device, dtype=torch.float32)

    # --- SDS ----------------------------------------------------------------------------------

    def sds(self, latents: Tensor, condition: Condition, generator: torch.Generator) -> SDSStep:
        """SDS (eq. 1) on render latents: τ ~ U[t_range], ε ~ N(0, I) from ``generator``.

        The loss 0.5·‖z − sg(z − grad)‖² has ∂loss/∂z = w(τ)(ε̂ − ε), so backpropagating it through
        the VAE encoder and the renderer gives eq. 1's gradient without differentiating the UNet.
        """
        batch = latents.shape[0]
        t = torch.randint(self.min_step, self.max_step + 1, (batch,), generator=generator, device=generator.device)
        t = t.to(self.device)
        noise = randn_tensor(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        noisy = self.scheduler.add_noise(latents.detach(), noise, t)
        noise_pred = self.predict_noise(noisy, t, condition, self.config.guidance_scale)
        weight = (1.0 - self.alphas_cumprod[t]).view(batch, 1, 1, 1)
        grad = torch.nan_to_num(weight * (noise_pred.float() - noise.float()))
        target = (latents.float() - grad).detach()
        loss = 0.5 * (latents.float() - target).square().flatten(1).sum(dim=1)
        return SDSStep(loss, t, noise, noise_pred, grad)

    @torch.no_grad()
    def predict_noise(self, noisy: Tensor, t: Tensor, condition: Condition, guidance_scale: float) -> Tensor:
        """ε̂ with classifier-free guidance: uncond + scale·(cond − uncond), one UNet call per chunk.

        The unconditional branch zeroes both the camera-projected token and the conditioning
        latent, as DreamGaussian4D does.
        """
        out = []
        for start in range(0, noisy.shape[0], CHUNK):
            part = slice(start, start + CHUNK)
            z, tokens, cond = noisy[part], condition.tokens[part], condition.latents[part]
            unet_in = torch.cat([torch.cat([z, cond], dim=1), torch.cat([z, torch.zeros_like(cond)], dim=1)])
            states = torch.cat([tokens, torch.zeros_like(tokens)])
            timesteps = torch.cat([t[part], t[part]])
            pred = self.unet(unet_in, timesteps, encoder_hidden_states=states).sample
            pred_cond, pred_uncond = pred.chunk(2)
            out.append(pred_uncond + guidance_scale * (pred_cond - pred_uncond))
        return torch.cat(out)

    # --- conditioning -------------------------------------------------------------------------

    def _resize(self, images: Tensor) -> Tensor:
        """(B, H, W, 3) in [0, 1] → (B, 3, S, S), S = input_size, bilinear (DreamGaussian4D)."""
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (B, H, W, 3), got {tuple(images.shape)}")
        x = images.to(self.device).permute(0, 3, 1, 2).float()
        size = self.config.input_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False)
        return x

    def _encode(self, renders: Tensor, generator: torch.Generator | None) -> Tensor:
        """Scaled VAE latents of renders: a posterior sample (SDS, carries the gradient back to the
        renders), or the posterior mode when ``generator`` is None (the deterministic probe)."""
        x = self._resize(renders).to(self.dtype) * 2.0 - 1.0
        latents = []
        for part in x.split(CHUNK):
            posterior = self.vae.encode(part).latent_dist
            latents.append(posterior.mode() if generator is None else posterior.sample(generator))
        return torch.cat(latents) * self.vae.config.scaling_factor

    @torch.no_grad()
    def _embed(self, images: Tensor) -> _Embedded:
        """CLIP ``image_embeds`` and unscaled VAE posterior-mode latents of condition images.

        The image processor is called on float tensors in [0, 1] with ``do_rescale=False``: both of
        its backends accept them (torchvision's where it is installed, else the PIL/numpy one, which
        resizes with PIL bicubic as the original Zero123 pipeline did), so no torchvision is needed
        and no PIL image is built here.
        """
        x = self._resize(images)
        embeds, latents = [], []
        for part in x.split(CHUNK):
            processed = self.feature_extractor(images=list(part.cpu()), do_rescale=False, return_tensors="pt")
            pixels = processed.pixel_values
            embeds.append(self.image_encoder(pixels.to(self.device, self.dtype)).image_embeds)
            latents.append(self.vae.encode(part.to(self.dtype) * 2.0 - 1.0).latent_dist.mode())
        return _Embedded(torch.cat(embeds), torch.cat(latents))

    def _frame_embeddings(self, frame_index: Tensor) -> _Embedded:
        if self._frames is None:
            raise RuntimeError("call set_frames(frames) before motion_loss or probe")
        return self._frames.select(frame_index.to(self.device, torch.long))

    @torch.no_grad()
    def _condition(self, embedded: _Embedded, delta: ViewDelta) -> Condition:
        pose = zero123_pose(delta, self.config.camera_embedding).to(self.device, self.dtype)
        if pose.shape[0] != embedded.image_embeds.shape[0]:
            raise ValueError(f"{pose.shape[0]} view deltas for {embedded.image_embeds.shape[0]} conditions")
        tokens = self.projection(torch.cat([embedded.image_embeds, pose], dim=-1)).unsqueeze(1)
        return Condition(tokens, embedded.latents)
