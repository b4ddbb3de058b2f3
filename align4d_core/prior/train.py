"""Training the learned prior: the VAE on the renders, then the UNet with CLIP and the projection.

``align4d prior train --data URI --out URI`` runs two phases on the data of :mod:`.data`:

1. **VAE** (``vae_steps``): ``AutoencoderKL`` fitted to every condition and target image, MSE of
   the reconstruction plus ``kl_weight`` × KL (as Stable Diffusion's VAE is trained, without the
   adversarial term). Then the latent scaling factor is set to 1/std of the training latents (SD's
   0.18215 was chosen the same way) and written into the VAE's config.
2. **Denoiser** (``unet_steps``): Zero123's objective. The target's latent (a posterior sample ×
   the scaling factor) is noised at τ ~ U{0 … 999}; the UNet sees it concatenated with the
   condition's unscaled posterior mode and cross-attends to one token, the camera projection of
   [CLIP image embedding of the condition; Zero123's pose vector]; MSE against the noise. With
   probability ``condition_drop`` the token and the condition latent are zeroed, so that the model
   learns the unconditional prediction classifier-free guidance needs (the guidance's zeros). The
   UNet, the CLIP tower and the projection train together (Zero123 kept a pretrained CLIP frozen;
   ours starts from nothing). The condition goes through exactly the preprocessing the guidance
   applies at run time (``Zero123Guidance._embed``: resized to the input size, the folder's CLIP
   image processor), and the pose through the same ``zero123_pose``.

Every random draw of step s comes from a generator seeded by (seed, s); checkpoints every
``checkpoint_every`` steps hold the weights, the optimizer's moments and the loss history, so a run
killed at any point resumes and ends with the weights of an uninterrupted run. The result is a
folder in the public ``ashawkey/zero123-xl-diffusers`` layout (:func:`save_zero123`), loaded by the
same loader as the real model, with ``prior.json`` beside it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict

import torch
import torch.nn.functional as F

from align4d_core.config import PriorTrainConfig
from align4d_core.errors import InputError
from align4d_core.guidance.base import ViewDelta
from align4d_core.guidance.zero123 import zero123_pose
from align4d_core.guidance.zero123_layout import Zero123Parts, save_zero123
from align4d_core.io import storage
from align4d_core.io.hashing import hash_json
from align4d_core.method.checkpoint import load_latest, save_checkpoint
from align4d_core.prior.data import check_writable, read_prior_data
from align4d_core.prior.model import build_prior

ProgressCallback = Callable[[str, int, int, float], None]
"""``progress(phase, step, steps, loss)`` after every step ("vae" or "denoiser")."""

PRIOR_JSON = "prior.json"


def _generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _images(pixels: torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) uint8 → (N, 3, S, S) float in [0, 1]."""
    return pixels.permute(0, 3, 1, 2).float() / 255.0


class _Training:
    """Parts, optimizer and history of one training run, saved and restored as a whole."""

    def __init__(self, config: PriorTrainConfig, data: dict[str, torch.Tensor]) -> None:
        self.config = config
        self.parts = build_prior(config.model, config.seed)
        self.conditions, self.targets = _images(data["condition"]), _images(data["target"])
        self.delta = data["delta"].float()
        self.history: list[dict] = []
        self.optimizer = self._vae_optimizer()
        self.cache: dict[str, torch.Tensor] | None = None

    # --- the two phases' parameters ---------------------------------------------------------------
    def _vae_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parts.vae.parameters(), lr=self.config.vae_lr)

    def denoiser_parameters(self) -> list[torch.nn.Parameter]:
        modules = (self.parts.unet, self.parts.image_encoder, self.parts.projection)
        return [p for m in modules for p in m.parameters()]

    def start_denoiser(self) -> None:
        """Freeze the VAE, set its scaling factor, cache what the denoiser reads, new optimizer."""
        self.parts.vae.requires_grad_(False)
        self._cache_inputs()
        self.optimizer = torch.optim.AdamW(self.denoiser_parameters(), lr=self.config.lr, weight_decay=0.0)

    def _cache_inputs(self) -> None:
        vae = self.parts.vae.eval()
        means, stds, conditions = [], [], []
        with torch.no_grad():
            for part in range(0, len(self.targets), 64):
                target = vae.encode(self.targets[part : part + 64] * 2 - 1).latent_dist
                means.append(target.mean)
                stds.append(target.std)
                conditions.append(vae.encode(self.conditions[part : part + 64] * 2 - 1).latent_dist.mode())
        mean = torch.cat(means)
        if "scaling_factor_set" not in self.__dict__:
            vae.register_to_config(scaling_factor=float(1.0 / mean.std()))
            self.scaling_factor_set = True
        processor = self.parts.feature_extractor
        pixels = [
            processor(images=list(self.conditions[i : i + 256]), do_rescale=False, return_tensors="pt").pixel_values
            for i in range(0, len(self.conditions), 256)
        ]
        pose = zero123_pose(ViewDelta(self.delta[:, 0], self.delta[:, 1], self.delta[:, 2]), "zero123")
        self.cache = {
            "mean": mean,
            "std": torch.cat(stds),
            "condition": torch.cat(conditions),
            "pixels": torch.cat(pixels),
            "pose": pose,
        }

    # --- steps ------------------------------------------------------------------------------------
    def vae_step(self, step: int) -> float:
        config, vae = self.config, self.parts.vae.train()
        generator = _generator(config.seed, step)
        images = torch.cat([self.conditions, self.targets])
        batch = images[torch.randint(len(images), (config.vae_batch,), generator=generator)] * 2 - 1
        posterior = vae.encode(batch).latent_dist
        z = posterior.sample(generator)
        recon = vae.decode(z).sample
        loss = F.mse_loss(recon, batch) + config.kl_weight * posterior.kl().mean()
        self._update(loss)
        return float(loss.detach())

    def denoiser_step(self, step: int) -> float:
        config, parts, cache = self.config, self.parts, self.cache
        parts.unet.train()
        parts.image_encoder.train()
        generator = _generator(config.seed, step)
        index = torch.randint(len(cache["mean"]), (config.batch,), generator=generator)
        scaling = parts.vae.config.scaling_factor
        eps = torch.randn(cache["mean"][index].shape, generator=generator)
        latents = (cache["mean"][index] + cache["std"][index] * eps) * scaling
        t = torch.randint(0, parts.scheduler.config.num_train_timesteps, (config.batch,), generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        noisy = parts.scheduler.add_noise(latents, noise, t)
        keep = (torch.rand(config.batch, generator=generator) >= config.condition_drop).float()
        embeds = parts.image_encoder(cache["pixels"][index]).image_embeds
        tokens = parts.projection(torch.cat([embeds, cache["pose"][index]], dim=-1)).unsqueeze(1)
        tokens = tokens * keep.view(-1, 1, 1)
        condition = cache["condition"][index] * keep.view(-1, 1, 1, 1)
        pred = parts.unet(torch.cat([noisy, condition], dim=1), t, encoder_hidden_states=tokens).sample
        loss = F.mse_loss(pred, noise)
        self._update(loss)
        return float(loss.detach())

    def _update(self, loss: torch.Tensor) -> None:
        if not bool(torch.isfinite(loss)):
            raise RuntimeError(f"the prior's training loss is {float(loss)}; the last checkpoint is kept")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 1.0)
        self.optimizer.step()

    # --- checkpoints ------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        parts = self.parts
        out = {}
        for name, module in (
            ("vae", parts.vae),
            ("unet", parts.unet),
            ("image_encoder", parts.image_encoder),
            ("projection", parts.projection),
        ):
            out.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
        for index, state in self.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                out[f"optimizer.{index}.{key}"] = torch.as_tensor(value).reshape(-1)
        return out

    def restore(self, tensors: dict[str, torch.Tensor], phase: str, scaling_factor: float | None) -> None:
        parts = self.parts
        for name, module in (
            ("vae", parts.vae),
            ("unet", parts.unet),
            ("image_encoder", parts.image_encoder),
            ("projection", parts.projection),
        ):
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        if phase == "denoiser":
            parts.vae.register_to_config(scaling_factor=scaling_factor)
            self.scaling_factor_set = True
            self.start_denoiser()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        state = self.optimizer.state_dict()
        indices = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("optimizer.")})
        state["state"] = {
            i: {
                "step": tensors[f"optimizer.{i}.step"].reshape(()),
                "exp_avg": tensors[f"optimizer.{i}.exp_avg"].reshape(params[i].shape),
                "exp_avg_sq": tensors[f"optimizer.{i}.exp_avg_sq"].reshape(params[i].shape),
            }
            for i in indices
        }
        self.optimizer.load_state_dict(state)


def train_prior(
    data: str, out: str, config: PriorTrainConfig = PriorTrainConfig(), progress: ProgressCallback | None = None
) -> dict:
    """Train the prior on the data at ``data`` into the folder ``out``; resumes from its checkpoints.

    Returns ``prior.json``'s contents. ``out`` ends as a Zero123 folder in the public
    ``zero123-pipeline`` layout with ``prior.json`` (config, data, d_prior, time, machine) and
    ``checkpoints/``.
    """
    check_writable(out)
    manifest, arrays = read_prior_data(data)
    if int(manifest["config"]["size"]) != config.model.size:
        raise InputError(
            f"the data's images are {manifest['config']['size']} px, the model's "
            f"{config.model.size} px (prior.model.size)",
            uri=data,
        )
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    run = _Training(config, arrays)
    folder = storage.join(out, "checkpoints")
    key = hash_json({"config": asdict(config), "data": manifest["key"]})
    first, spent = 1, 0.0
    latest = load_latest(folder)
    if latest is not None:
        step, tensors, meta = latest
        if meta.get("key") != key:
            raise InputError(
                "the checkpoints there were made with other settings or data; use a new --out or the "
                "same settings to resume",
                uri=out,
            )
        run.history = list(meta["history"])
        run.restore(tensors, meta["phase"], meta.get("scaling_factor"))
        first, spent = step + 1, float(meta.get("seconds", 0.0))
    total = config.vae_steps + config.unet_steps
    for step in range(first, total + 1):
        if step == config.vae_steps + 1 and run.cache is None:
            run.start_denoiser()
        phase = "vae" if step <= config.vae_steps else "denoiser"
        loss = run.vae_step(step) if phase == "vae" else run.denoiser_step(step)
        run.history.append({"step": step, "phase": phase, "loss": loss})
        if progress is not None:
            progress(phase, step, total, loss)
        if step % config.checkpoint_every == 0 or step == total or step == config.vae_steps:
            meta = {
                "key": key,
                "phase": phase,
                "history": run.history,
                "scaling_factor": run.parts.vae.config.scaling_factor if phase == "denoiser" else None,
                "seconds": spent + time.perf_counter() - started,
            }
            save_checkpoint(folder, step, run.tensors(), meta)
            _drop_old(folder, step)
    if run.cache is None:  # a run with no denoiser steps still has the VAE's scaling factor
        run.start_denoiser()
    save_zero123(out, _frozen(run.parts))
    record = {
        "format": "align4d-prior/1",
        "train": asdict(config),
        "data": {
            "uri": data,
            "key": manifest["key"],
            "pairs": manifest["pairs"],
            "families": manifest["families"],
            "seed": manifest["config"]["seed"],
            "d_prior": manifest["config"]["d_prior"],
            "band": manifest["config"]["band"],
            "size": manifest["config"]["size"],
        },
        "d_prior": manifest["config"]["d_prior"],
        "input_size": config.model.size,
        "scaling_factor": run.parts.vae.config.scaling_factor,
        "seconds": spent + time.perf_counter() - started,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": "cpu",
        },
        "final_loss": {p: _mean_tail(run.history, p) for p in ("vae", "denoiser")},
    }
    storage.write_json(storage.join(out, PRIOR_JSON), record)
    return record


def _frozen(parts: Zero123Parts) -> Zero123Parts:
    for module in (parts.vae, parts.unet, parts.image_encoder, parts.projection):
        module.eval()
    return parts


def _mean_tail(history: list[dict], phase: str, last: int = 100) -> float | None:
    values = [r["loss"] for r in history if r["phase"] == phase][-last:]
    return sum(values) / len(values) if values else None


def _drop_old(folder: str, step: int) -> None:
    """Keep the newest two checkpoints: the one ``latest.json`` names and the one before it."""
    names = sorted(n for n in storage.listdir(folder) if n.startswith("step_") and n.endswith(".safetensors"))
    for name in names[:-2]:
        storage.remove(storage.join(folder, name))
