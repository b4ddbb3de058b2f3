"""Time and peak memory of each pair generator; prints a table, never asserts.

    python benchmarks/pairs.py                 # tiny random models on the CPU
    python benchmarks/pairs.py --device cuda   # tiny models on CUDA, then real weights where present

Each row runs in a fresh process, so its peak memory is its own: the process's peak RSS on the CPU,
``torch.cuda.max_memory_allocated`` on CUDA. "first" is the first call (cold: imports, file cache),
"call" what the pair stage pays per item (load, run, release), median of ``--repeats``, and "load"
``from_pretrained`` + placement alone, warm. The baseline row is a process with align4d's pair
modules imported and nothing run: subtract it from a row's peak for the generator's own memory.

Tiny models are the tests' (``tests/tiny_pairs.py``: random weights, 32 px, 2 steps): their figures
measure the plumbing (loading, pre/post-processing, masks, release), not the models. Real weights
are used when they load without the network (a local folder or the hub cache; set the settings'
``model`` through ``--config`` for folders): SDXL at 1024 px, SVD at 1024x576 with 14 frames, Shap-E
with a 128^3 grid, each with the configured steps; a model that is not present is listed as such.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

MIB = 2**20


def _quiet() -> None:
    """No loading/saving progress bars between the table's rows."""
    import diffusers.utils.logging
    import huggingface_hub.utils
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def _peak(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / MIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _row(name: str, pairs_settings: dict, device: str, repeats: int, queue) -> None:
    """One generator in this (fresh) process: load time, call times, peak memory."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    _quiet()
    from align4d_core.config import FrontViewConfig, PairsConfig, from_dict
    from align4d_core.pairs import weights
    from align4d_core.pairs.caption import caption
    from align4d_core.pairs.image_to_3d import image_to_3d
    from align4d_core.pairs.image_to_video import ImageToVideo
    from align4d_core.pairs.masks import white_background_masks
    from align4d_core.pairs.text_to_image import TextToImage
    from align4d_core.pairs.views import front_view

    dev = torch.device(device)
    config = from_dict(PairsConfig, pairs_settings)
    image = torch.ones(64, 64, 3)
    image[16:48, 20:44] = torch.tensor([0.9, 0.4, 0.1])
    section, load_class, run = {
        "text_to_image (SDXL)": (
            config.text_to_image,
            "StableDiffusionXLPipeline",
            lambda: TextToImage(config.text_to_image, dev)("a red toy robot"),
        ),
        "image_to_video (SVD)": (
            config.image_to_video,
            "StableVideoDiffusionPipeline",
            lambda: ImageToVideo(config.image_to_video, dev)(image),
        ),
        "image_to_3d (Shap-E)": (
            config.image_to_3d,
            "ShapEImg2ImgPipeline",
            lambda: image_to_3d(config.image_to_3d, dev)(image),
        ),
        "caption (BLIP)": (config.caption, None, lambda: caption(image, config.caption, dev)),
        "masks (threshold, 14x576x576)": (
            None,
            None,
            lambda: white_background_masks(_frames(14, 576), config.masks.white_threshold),
        ),
        "front_view (16k Gaussians, 512 px)": (None, None, lambda: front_view(_sphere(16384), FrontViewConfig(), 49.1)),
        "baseline (imports only)": (None, None, lambda: None),
    }[name]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    load = None
    try:
        calls = []
        for _ in range(repeats):
            started = time.perf_counter()
            out = run()
            if device == "cuda":
                torch.cuda.synchronize()
            calls.append(time.perf_counter() - started)
        if load_class is not None:  # after the calls: the load alone, warm (imports and file cache done)
            import diffusers

            started = time.perf_counter()
            pipe = weights.load_pipeline(getattr(diffusers, load_class), f"pairs.{name}", section, dev)
            if device == "cuda":
                torch.cuda.synchronize()
            load = time.perf_counter() - started
            del pipe
            weights.free_memory(dev)
        queue.put(
            {
                "row": name,
                "model": getattr(section, "model", "-") if section else "-",
                "load_s": load,
                "call_s": statistics.median(calls),
                "first_s": calls[0],
                "peak_mib": _peak(device),
                "out": _describe(out),
            }
        )
    except Exception as error:  # noqa: BLE001 - a missing model is a row, not a crash
        queue.put(
            {
                "row": name,
                "model": getattr(section, "model", "-") if section else "-",
                "error": f"{type(error).__name__}: {str(error)[:160]}",
            }
        )


def _frames(n: int, size: int):
    import torch

    frames = torch.ones(n, size, size, 3) * 0.97
    frames[:, size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = torch.tensor([0.2, 0.5, 0.8])
    return frames


def _sphere(n: int):
    import trimesh

    from align4d_core.io.mesh import gaussians_from_mesh

    return gaussians_from_mesh(trimesh.creation.icosphere(subdivisions=4, radius=0.45), n, seed=0)


def _describe(out) -> str:
    import torch

    if isinstance(out, torch.Tensor):
        return "x".join(map(str, out.shape))
    if isinstance(out, tuple) and out and hasattr(out[0], "rgb"):
        return f"{'x'.join(map(str, out[0].rgb.shape))} at d={out[1]:.2f}"
    if hasattr(out, "mesh") and out.mesh is not None:
        return f"{len(out.mesh.vertices)} vertices, {len(out.mesh.faces)} faces"
    return repr(out)[:40]


ROWS = (
    "text_to_image (SDXL)",
    "image_to_video (SVD)",
    "image_to_3d (Shap-E)",
    "caption (BLIP)",
    "front_view (16k Gaussians, 512 px)",
    "baseline (imports only)",
)


def run_rows(label: str, settings: dict, device: str, repeats: int, rows=ROWS) -> list[dict]:
    ctx = mp.get_context("spawn")
    results = []
    for name in rows:
        queue = ctx.Queue()
        process = ctx.Process(target=_row, args=(name, settings, device, repeats, queue))
        process.start()
        process.join()
        result = queue.get() if not queue.empty() else {"row": name, "error": f"exit code {process.exitcode}"}
        result["set"] = label
        results.append(result)
        _print(result)
    return results


def _print(r: dict) -> None:
    if "error" in r:
        print(f"{r['set']:<6} {r['row']:<36} {'-':>7} {'-':>8} {'-':>8} {'-':>9}  {r['error']}", flush=True)
        return
    load = f"{r['load_s']:.3f}" if r["load_s"] is not None else "-"
    print(
        f"{r['set']:<6} {r['row']:<36} {load:>7} {r['first_s']:>8.3f} {r['call_s']:>8.3f} {r['peak_mib']:>9.0f}  "
        f"{r['out']}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", help="JSON file with a 'pairs' section for the real-weights rows")
    parser.add_argument("--no-real", action="store_true", help="only the tiny models")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    import tiny_pairs
    import torch

    print(
        f"torch {torch.__version__}, device {args.device}"
        + (
            f" ({torch.cuda.get_device_name()})"
            if args.device == "cuda"
            else f", {os.cpu_count()} CPUs, {os.environ.get('BENCH_THREADS', '2')} threads"
        )
    )
    print(f"{'set':<6} {'generator':<36} {'load s':>7} {'first s':>8} {'call s':>8} {'peak MiB':>9}  output")
    rows = []
    with tempfile.TemporaryDirectory(prefix="align4d-pairs-bench-") as tmp:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tiny models are local; real ones must be cached
        _quiet()
        models = tiny_pairs.save_all(Path(tmp))
        tiny = tiny_pairs.tiny_pairs_settings(models, caption={"backend": "blip", "model": str(models["blip"])})
        tiny["image_to_video"]["frames"] = 14
        rows += run_rows("tiny", tiny, args.device, args.repeats)
    if args.device == "cuda" and not args.no_real:
        real = json.loads(Path(args.config).read_text()).get("pairs", {}) if args.config else {}
        real = {**real, "caption": {**real.get("caption", {}), "backend": "blip"}}
        rows += run_rows("real", real, args.device, 1, rows=ROWS[:4])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
