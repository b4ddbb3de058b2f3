"""The learned prior against known truth: novel views, denoising, and MAOD on the sample.

    python benchmarks/prior.py [--model align4d:prior-v1] [--objects 24] [--steps 50] [--out DIR]

1. **Novel views** on held-out procedural objects (``align4d prior data --split heldout``: the
   same families, objects the prior never saw): DDIM samples (``--steps``, classifier-free guidance
   ``--scale``) of the target view from the condition view and the relative pose, against the true
   render (PSNR, SSIM), beside two baselines that need no model: the condition image itself and a
   blank white image.
2. **Denoising**: the noise-prediction MSE on held-out targets per timestep band, conditional
   against unconditional (zeroed condition): what the condition is worth at each noise level.
3. **MAOD against truth**: ODA on the sample's five items (VAOD 1.15 … 2.60) with the prior, under
   each Δradius setting of the probe (``relative``, ``zero``): VAOD, MAOD, the distance the prior
   would match (d_prior scaled by the item's radius over the training objects' radius: the size on
   screen the prior was trained on), the rule that chose MAOD and whether it fell back; the curves
   as ``maod_curves.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from align4d_core.config import GuidanceConfig, PriorDataConfig, SampleConfig, SearchConfig  # noqa: E402
from align4d_core.guidance import ViewDelta, load_guidance  # noqa: E402
from align4d_core.guidance.bundled import PRIOR, bundled_info  # noqa: E402
from align4d_core.io import storage  # noqa: E402
from align4d_core.io.dataset import load_item  # noqa: E402
from align4d_core.io.manifest import read_manifest  # noqa: E402
from align4d_core.method.oda import search  # noqa: E402
from align4d_core.metrics.images import psnr, ssim  # noqa: E402
from align4d_core.prior.data import read_prior_data, write_prior_data  # noqa: E402
from align4d_core.prior.objects import RADIUS  # noqa: E402
from align4d_core.runtime import tune_allocator  # noqa: E402
from align4d_core.sample import write_sample  # noqa: E402

BANDS = ((0, 200), (200, 400), (400, 600), (600, 800), (800, 1000))


def images(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 255.0  # (N, S, S, 3)


@torch.no_grad()
def ddim_sample(
    guidance, conditions: torch.Tensor, delta: torch.Tensor, steps: int, scale: float, seed: int
) -> torch.Tensor:
    """Target views (N, S, S, 3) sampled by DDIM from the condition images and relative poses."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(guidance.scheduler.config)
    scheduler.set_timesteps(steps)
    embedded = guidance._embed(conditions)
    condition = guidance._condition(embedded, ViewDelta(delta[:, 0], delta[:, 1], delta[:, 2]))
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn((len(conditions), *guidance.latent_shape), generator=generator)
    for t in scheduler.timesteps:
        tt = torch.full((len(z),), int(t), dtype=torch.long)
        pred = guidance.predict_noise(z, tt, condition, scale)
        z = scheduler.step(pred, t, z).prev_sample
    decoded = guidance.vae.decode(z / guidance.vae.config.scaling_factor).sample
    return ((decoded + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)


def metric_means(pred: torch.Tensor, true: torch.Tensor) -> tuple[float, float]:
    """Mean PSNR and SSIM over images (N, S, S, 3) in [0, 1]."""
    return float(psnr(pred, true).mean()), float(ssim(pred, true).mean())


@torch.no_grad()
def denoising_bands(guidance, conditions, targets, delta, seed: int) -> list[tuple[str, float, float]]:
    generator = torch.Generator().manual_seed(seed)
    condition = guidance._condition(guidance._embed(conditions), ViewDelta(delta[:, 0], delta[:, 1], delta[:, 2]))
    latents = guidance._encode(targets, None)
    unconditional = replace(
        condition, tokens=torch.zeros_like(condition.tokens), latents=torch.zeros_like(condition.latents)
    )
    rows = []
    for low, high in BANDS:
        t = torch.randint(low, high, (len(latents),), generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        noisy = guidance.scheduler.add_noise(latents, noise, t)
        cond = (guidance.predict_noise(noisy, t, condition, 1.0) - noise).square().mean()
        uncond = (guidance.predict_noise(noisy, t, unconditional, 1.0) - noise).square().mean()
        rows.append((f"{low}-{high}", float(cond), float(uncond)))
    return rows


def maod_section(guidance, d_prior: float, work: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = storage.join(work, "sample")
    if not storage.exists(storage.join(root, "manifest.jsonl")):
        write_sample(root, SampleConfig())
    items = read_manifest(root)
    figure, axes = plt.subplots(1, len(items), figsize=(4 * len(items), 3.2), squeeze=False)
    print(f"\nMAOD on the sample (d_prior {d_prior}; expected = d_prior × item radius / {RADIUS}):")
    print(
        f"{'item':14s} {'radius':>6s} {'VAOD':>6s} {'expected':>8s} | {'relative: MAOD':>15s} fell back | "
        f"{'zero: MAOD':>11s} fell back"
    )
    fallbacks = {"relative": 0, "zero": 0}
    for k, item in enumerate(items):
        loaded = load_item(root, item)
        radius = float(loaded.gaussians.means.norm(dim=-1).max())
        expected = d_prior * radius / RADIUS
        cells, rules = [], []
        for mode in ("relative", "zero"):
            config = SearchConfig(probe_radius=mode)
            started = time.perf_counter()
            found = search(loaded.gaussians, loaded.video.frames[0], loaded.masks[0], guidance, config)
            seconds = time.perf_counter() - started
            cells.append(f"{found.maod:15.3f} {'yes' if found.maod_fallback else 'no':>9s}")
            rules.append(f"{mode}: {found.maod_rule}")
            fallbacks[mode] += int(found.maod_fallback)
            axes[0][k].plot(found.distances, found.maod_sds, label=f"{mode} (MAOD {found.maod:.2f})")
        axes[0][k].axvline(found.vaod, color="k", ls="--", lw=0.8, label=f"VAOD {found.vaod:.2f}")
        axes[0][k].axvline(expected, color="g", ls=":", lw=1.0, label=f"expected {expected:.2f}")
        axes[0][k].set_title(item.id)
        axes[0][k].set_xlabel("object distance")
        axes[0][k].legend(fontsize=7)
        print(
            f"{item.id:14s} {radius:6.3f} {found.vaod:6.3f} {expected:8.3f} | {cells[0]} | {cells[1]}  "
            f"({seconds:.1f} s a search)"
        )
        for rule in rules:
            print(f"{'':14s} {rule}")
    print(
        f"fell back to VAOD: relative {fallbacks['relative']} of {len(items)}, zero {fallbacks['zero']} of {len(items)}"
    )
    axes[0][0].set_ylabel("SDS probe (eq. 5)")
    figure.tight_layout()
    path = os.path.join(work, "maod_curves.png")
    figure.savefig(path, dpi=110)
    print(f"curves: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=PRIOR, help="the prior (default: the bundled one) or any Zero123 folder")
    parser.add_argument("--objects", type=int, default=24, help="held-out objects (pairs: x the config's)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--scale", type=float, default=3.0, help="classifier-free guidance of the samples")
    parser.add_argument("--out", default=None, help="keep the held-out data and figures here")
    parser.add_argument("--skip-maod", action="store_true")
    args = parser.parse_args()
    tune_allocator()
    work = args.out or tempfile.mkdtemp(prefix="align4d-prior-bench-")
    info = bundled_info(args.model) or {}
    size = int(info.get("input_size", 64))
    guidance = load_guidance(GuidanceConfig(backend="zero123", model=args.model, input_size=size), "cpu")
    data_config = PriorDataConfig(
        **{k: v for k, v in info.get("data", {}).items() if k in ("d_prior", "band", "size")}, objects=args.objects
    )
    d_prior = float(info.get("d_prior", data_config.d_prior))
    print(
        f"prior {args.model}: {size} px, d_prior {d_prior}, trained {info.get('seconds', float('nan')) / 60:.1f} "
        f"min on {info.get('machine', {}).get('processor', '?')}; held-out data in {work}"
    )
    heldout = storage.join(work, "heldout")
    write_prior_data(heldout, data_config, split="heldout")
    _, arrays = read_prior_data(heldout)
    conditions, targets, delta = images(arrays["condition"]), images(arrays["target"]), arrays["delta"].float()

    started = time.perf_counter()
    samples = torch.cat(
        [
            ddim_sample(guidance, conditions[i : i + 16], delta[i : i + 16], args.steps, args.scale, i)
            for i in range(0, len(conditions), 16)
        ]
    )
    sampling = time.perf_counter() - started
    moved = delta.abs().sum(dim=1) > 1e-6  # same-view pairs (eq. 8's case) have the condition as their truth
    rows = [
        ("prior (DDIM samples)", *metric_means(samples[moved], targets[moved])),
        ("condition image", *metric_means(conditions[moved], targets[moved])),
        ("blank white image", *metric_means(torch.ones_like(targets[moved]), targets[moved])),
    ]
    print(
        f"\nnovel views of {int(moved.sum())} held-out pairs with Δpose ≠ 0 ({args.steps} DDIM steps, "
        f"scale {args.scale}, {sampling / len(targets):.2f} s a view):"
    )
    print(f"{'':22s} {'PSNR dB':>8s} {'SSIM':>6s}")
    for label, p, s in rows:
        print(f"{label:22s} {p:8.2f} {s:6.3f}")
    if bool((~moved).any()):
        p, s = metric_means(samples[~moved], targets[~moved])
        print(f"{'prior, Δpose = 0':22s} {p:8.2f} {s:6.3f}  ({int((~moved).sum())} pairs; the condition is the truth)")
    shown = torch.cat([conditions[:8], samples[:8], targets[:8]], dim=1)  # (8, 3S, S, 3): one column per pair
    grid = shown.permute(1, 0, 2, 3).reshape(3 * size, -1, 3)
    from align4d_core.io.media import write_image

    write_image(os.path.join(work, "novel_views.png"), grid)
    print(f"rows: condition, sample, truth: {os.path.join(work, 'novel_views.png')}")

    print("\nnoise-prediction MSE on held-out targets, per timestep band:")
    print(f"{'band':>10s} {'conditional':>12s} {'unconditional':>14s}")
    for band, cond, uncond in denoising_bands(guidance, conditions, targets, delta, 0):
        print(f"{band:>10s} {cond:12.4f} {uncond:14.4f}")
    if not args.skip_maod:
        maod_section(guidance, d_prior, work)


if __name__ == "__main__":
    main()
