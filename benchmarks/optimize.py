"""The optimizer on the bundled sample: accuracy, ablations, AO vs JO, time and memory.

    python benchmarks/optimize.py [--out DIR] [--items a,b] [--methods align4d,no-oda,...] [--steps N]
    python benchmarks/optimize.py --zero123-size full [--device cuda] ...  (benchmarks/zero123_full.py)

For every sample item and method (the full method and the ablations of Table III) it runs
``align4d generate`` with the default config of this machine (the CPU profile here, the paper's
schedule on CUDA) in a fresh process, and prints:

* VAOD against the item's true distance;
* the front-view PSNR against the input video, averaged over frames;
* the PSNR of the evaluation views (azimuths -75/15/105/195, every frame) against the sample's
  ground-truth views, which only a synthetic sample has;
* optimisation time and the process's peak memory;

then the AO vs JO loss curves of one item as a PNG, with the loss after 100, 200, ... steps
(Table IV). The guidance backend of every row is printed with it. Figures are from one run each on
a shared machine: compare rows of the same run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from align4d_core.config import EVAL_AZIMUTHS, PRESETS, SampleConfig, build_run_config, merge  # noqa: E402
from align4d_core.io import storage  # noqa: E402
from align4d_core.io.manifest import item_uri, read_manifest  # noqa: E402
from align4d_core.io.media import read_image, read_video  # noqa: E402
from align4d_core.io.ply import read_gaussians_ply  # noqa: E402
from align4d_core.metrics.images import ssim as image_ssim  # noqa: E402
from align4d_core.pipeline.generate import generate, pair_inputs  # noqa: E402
from align4d_core.pipeline.plots import plot_losses  # noqa: E402
from align4d_core.runtime import (
    device_of,  # noqa: E402
    tune_allocator,  # noqa: E402
)
from align4d_core.sample import write_sample  # noqa: E402
from align4d_core.scene.cameras import orbit_cameras  # noqa: E402
from align4d_core.scene.deformation import deform, load_deformation  # noqa: E402
from align4d_core.scene.render import render  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def front_psnr(out: str, video: torch.Tensor, distance: float, fovy: float) -> float:
    """Re-render the exported object from the front at the fitted distance, against the video."""
    canonical = read_gaussians_ply(storage.join(out, "object", "canonical.ply"))
    field = load_deformation(storage.join(out, "object", "deformation.safetensors"))
    n, height, width = video.shape[:3]
    with torch.no_grad():
        frames = deform(canonical, field, torch.arange(n), n)
        rgb = render(frames, orbit_cameras(0.0, 0.0, [distance] * n, width=width, height=height, fovy_deg=fovy)).rgb
    return statistics.mean(psnr(rgb[t].numpy(), video[t].numpy()) for t in range(n))


def eval_scores(out: str, truth_eval: str, n_frames: int) -> dict[str, float]:
    """Mean PSNR and SSIM of the exported evaluation views against the ground truth, over views and
    frames, for every frame and for frames t > 0 only (where the motion must reach the unseen views:
    frame 0 is the 3D input's own time)."""
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "psnr_t>0": [], "ssim_t>0": []}
    for k in range(len(EVAL_AZIMUTHS)):
        for t in range(n_frames):
            pred, _ = read_image(storage.join(out, "eval", f"eval_{k}", f"{t}.png"))
            true, _ = read_image(storage.join(truth_eval, f"eval_{k}", f"{t}.png"))
            p = psnr(pred.numpy(), true.numpy())
            s = float(image_ssim(pred[None], true[None]))
            scores["psnr"].append(p)
            scores["ssim"].append(s)
            if t > 0:
                scores["psnr_t>0"].append(p)
                scores["ssim_t>0"].append(s)
    return {key: statistics.mean(values) for key, values in scores.items()}


METHODS = {"anchor": ("align4d", {"guidance": {"backend": "anchor"}})}
"""Rows that are a preset with settings laid over it: ``anchor`` is the full method with the
weight-free anchor guidance in place of the prior (what ran here before the learned prior)."""


def _run_one(queue, root: str, item_id: str, method: str, out: str, steps: int | None, overrides: dict) -> None:
    tune_allocator()
    try:
        item = next(i for i in read_manifest(root) if i.id == item_id)
        truth = storage.read_json(storage.join(root, "items", item_id, "truth.json"))
        preset, extra_settings = METHODS.get(method, (method, {}))
        values = merge(merge(extra_settings, overrides), {"optimize": {"steps": steps}} if steps else {})
        config = build_run_config(device_of().type, values, preset=preset)
        inputs = pair_inputs(
            item_uri(root, item, "video"), item_uri(root, item, "object"), item_uri(root, item, "masks")
        )
        done = generate(inputs, out, config, eval_size=truth["size"])
        video = read_video(inputs.video).frames
        extra = done["extra"]
        queue.put(
            {
                "item": item_id,
                "method": method,
                "guidance": extra["guidance"],
                "true_distance": truth["distance"],
                "vaod": extra["vaod"],
                "maod": extra["maod"],
                "gaussians": extra["gaussians"],
                "front_psnr": front_psnr(out, video, extra["vaod"], config.fovy_deg),
                **{f"eval_{k}": v for k, v in eval_scores(out, item_uri(root, item, "eval"), truth["frames"]).items()},
                "seconds": done["timings"],
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "history": storage.read_json(storage.join(out, "losses.json"))["history"],
            }
        )
    except Exception as exc:  # noqa: BLE001 - report and keep the table going
        queue.put({"item": item_id, "method": method, "error": f"{type(exc).__name__}: {exc}"})


def run_isolated(*args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_one, args=(queue, *args))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="keep runs here (default: a temporary folder)")
    parser.add_argument("--items", default="", help="comma-separated sample items (default: all)")
    parser.add_argument(
        "--methods", default=",".join(PRESETS), help=f"comma-separated presets, or {', '.join(METHODS)}"
    )
    parser.add_argument("--steps", type=int, default=None, help="override the optimisation steps")
    parser.add_argument(
        "--set",
        default=None,
        help="settings laid over the config, as JSON "
        '(e.g. \'{"optimize": {"prune_scale": 0.1}}\'), for measuring an open choice',
    )
    parser.add_argument("--curves-item", default="arm_swing", help="item whose AO/JO curves are plotted")
    parser.add_argument(
        "--zero123-size",
        choices=("none", "full"),
        default="none",
        help="full: time a full-size random Zero123-XL at the paper's settings instead",
    )
    parser.add_argument("--item", default="arm_swing", help="with --zero123-size full: the sample item")
    parser.add_argument(
        "--probe-distances",
        type=int,
        default=None,
        help="with --zero123-size full: time the probe on this many distances (default: all on "
        "CUDA, 2 on CPU) and extrapolate",
    )
    parser.add_argument(
        "--step-frames",
        type=int,
        default=None,
        help="with --zero123-size full: frames per timed SDS step (default: all on CUDA, 1 on CPU)",
    )
    parser.add_argument(
        "--schedule",
        choices=("auto", "yes", "no"),
        default="auto",
        help="with --zero123-size full: run the whole 500-step schedule (auto: on CUDA only)",
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    args = parser.parse_args()
    tune_allocator()
    if args.zero123_size == "full":
        from zero123_full import run as run_full

        device = device_of(args.device)
        probe = args.probe_distances if args.probe_distances else (None if device.type == "cuda" else 2)
        schedule = args.schedule == "yes" or (args.schedule == "auto" and device.type == "cuda")
        frames = args.step_frames if args.step_frames else (None if device.type == "cuda" else 1)
        run_full(args.out or tempfile.mkdtemp(prefix="align4d-zero123-"), args.item, device, probe, schedule, frames)
        return

    work = args.out or tempfile.mkdtemp(prefix="align4d-bench-")
    root = storage.join(work, "sample")
    if not storage.exists(storage.join(root, "manifest.jsonl")):
        write_sample(root, SampleConfig())
    items = [i.id for i in read_manifest(root)]
    if args.items:
        items = [i for i in items if i in args.items.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    overrides = json.loads(args.set) if args.set else {}
    if overrides:
        print(f"settings laid over the config: {json.dumps(overrides)}")
    print(f"torch {torch.__version__}, device {device_of()}, {torch.get_num_threads()} threads; runs in {work}")

    rows = []
    for item_id in items:
        for method in methods:
            row = run_isolated(
                root, item_id, method, storage.join(work, "runs", item_id, method), args.steps, overrides
            )
            rows.append(row)
            _print_row(row)
    storage.write_json(storage.join(work, "results.json"), rows)
    _print_summary(rows, methods)
    _ao_vs_jo(rows, args.curves_item, work)


def _print_row(row: dict) -> None:
    if "error" in row:
        print(f"{row['item']:14s} {row['method']:8s} FAILED {row['error']}")
        return
    print(
        f"{row['item']:14s} {row['method']:8s} [{row['guidance']}] true {row['true_distance']:.2f} "
        f"VAOD {row['vaod']:.3f} (err {abs(row['vaod'] - row['true_distance']):.3f}) "
        f"front {row['front_psnr']:.2f} dB, eval views {row['eval_psnr']:.2f} dB / SSIM {row['eval_ssim']:.3f} "
        f"(t > 0: {row['eval_psnr_t>0']:.2f} dB / {row['eval_ssim_t>0']:.3f}), "
        f"optimize {row['seconds']['optimize']:.0f} s, total {row['seconds']['total']:.0f} s, "
        f"peak RSS {row['peak_rss_bytes'] / 2**30:.2f} GiB, {row['gaussians']} Gaussians",
        flush=True,
    )


EVAL_KEYS = ("eval_psnr", "eval_ssim", "eval_psnr_t>0", "eval_ssim_t>0")


def _print_summary(rows: list[dict], methods: list[str]) -> None:
    ok = [r for r in rows if "error" not in r]
    print("\neval-view PSNR (dB) per item and method")
    print(f"{'item':14s} {'true d':>6s} " + " ".join(f"{m:>8s}" for m in methods))
    for item in dict.fromkeys(r["item"] for r in ok):
        cells = {r["method"]: r["eval_psnr"] for r in ok if r["item"] == item}
        d = next(r["true_distance"] for r in ok if r["item"] == item)
        print(f"{item:14s} {d:6.2f} " + " ".join(f"{cells.get(m, float('nan')):8.2f}" for m in methods))
    for method in methods:
        mine = [r for r in ok if r["method"] == method]
        if mine:
            means = {k: statistics.mean(r[k] for r in mine) for k in ("front_psnr", *EVAL_KEYS)}
            print(
                f"mean {method:8s}: front {means['front_psnr']:.2f} dB, eval views {means['eval_psnr']:.2f} dB / "
                f"SSIM {means['eval_ssim']:.3f}, frames t > 0 {means['eval_psnr_t>0']:.2f} dB / "
                f"{means['eval_ssim_t>0']:.3f}"
            )


def _ao_vs_jo(rows: list[dict], item: str, work: str) -> None:
    curves = {
        r["method"]: r["history"] for r in rows if r.get("item") == item and r.get("method") in ("align4d", "no-ao")
    }
    if len(curves) < 2:
        return
    labelled = {"AO (align4d)": curves["align4d"], "JO (no-ao)": curves["no-ao"]}
    uri = storage.join(work, "ao_vs_jo.png")
    plot_losses(labelled, uri, title=f"AO vs JO on {item}")
    print(f"\nAO vs JO on {item}: loss averaged over the 20 steps up to each step (curves in {uri})")
    for label, history in labelled.items():
        cells = []
        for mark in (100, 200, 300, 400, 500):
            window = [r for r in history if mark - 20 < r["step"] <= mark]
            if window:
                loss = statistics.mean(r["loss"] for r in window)
                known = statistics.mean(r["ksva_rgb"] for r in window)
                cells.append(f"{mark}: {loss:.3g} (front MSE {known:.2e})")
        print(f"  {label:14s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
