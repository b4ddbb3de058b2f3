"""The Consistent4D evaluation protocol on folders: per frame, then per view, then per object.

A prediction folder and a ground-truth folder both hold ``eval_<k>/<frame>.png`` (k = 0..3 for the
azimuths -75, 15, 105, 195). Frames are resized to ``MetricsConfig.size`` (512, as Consistent4D's
scripts do) and scored with PSNR, SSIM, LPIPS (VGG), CLIP similarity and CLIP-F, each averaged over
the frames of a view, and with FVD per view; every metric is then averaged over the views.

The result (``metrics.json``; other modules read exactly these keys)::

    {"psnr": float | None, "ssim": ..., "lpips": ..., "clip": ..., "clip_f": ..., "fvd": ...,
     "views": {"eval_0": {"psnr": float | None, ...}, ...},
     "missing": {metric: reason}}

A metric is a float or None, and None always has its reason under ``missing``: weights that are
not on this machine, a metric left out of ``MetricsConfig.compute``, or a value that was not finite.
The networks load once per process and device (a small cache keyed by their locations).
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import statistics
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from align4d_core.config import METRICS, MetricsConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.media import list_frames, read_image
from align4d_core.metrics import clip as clip_metric
from align4d_core.metrics.fvd import fvd
from align4d_core.metrics.i3d import load_i3d
from align4d_core.metrics.images import psnr, ssim
from align4d_core.metrics.lpips import load_lpips, lpips_per_frame
from align4d_core.metrics.weights import MissingWeights

"""The metrics of DESIGN.md §7, in the order of the paper's Table II."""

MISSING = {
    "lpips": "no VGG16 weights on this machine: set metrics.lpips_vgg to a torchvision vgg16 state dict "
    "(default: the torch cache's vgg16-397923af.pth)",
    "clip": "no CLIP ViT-B/32 weights on this machine: set metrics.clip_model to a local folder or a cached hub id",
    "clip_f": "no CLIP ViT-B/32 weights on this machine: set metrics.clip_model to a local folder or a cached hub id",
    "fvd": "no I3D weights on this machine: set metrics.fvd_i3d to pytorch-i3d's i3d_pretrained_400.pt "
    "(default: the torch cache's i3d_pretrained_400.pt)",
}
"""Why each network-based metric is missing when its weights are absent: the generic reasons, for
tables and docs. :func:`evaluate_views` reports the exact location it looked at."""


@functools.lru_cache(maxsize=2)
def _lpips(vgg: str | None, heads: str | None, device: str):
    return load_lpips(vgg, heads).to(device)


@functools.lru_cache(maxsize=2)
def _clip(model: str, revision: str | None, download: bool, device: str):
    return clip_metric.load_clip(model, revision, download).to(device)


@functools.lru_cache(maxsize=2)
def _i3d(path: str | None, device: str):
    return load_i3d(path).to(device)


@contextlib.contextmanager
def _full_float32() -> Iterator[None]:
    """CUDA convolutions and matrix products in IEEE float32 while scoring, not TF32 (torch's default
    for cuDNN convolutions): a score must not depend on the GPU generation beyond rounding."""
    conv, matmul = getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul
    if conv is None or not hasattr(conv, "fp32_precision"):  # torch < 2.9: the legacy switches
        saved = torch.backends.cudnn.allow_tf32, matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = saved
        return
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


_VIEW = re.compile(r"^eval_(\d+)$")


def _views(folder: str) -> list[str]:
    """The ``eval_<k>`` folders in ``folder``, by k (not ``eval_gt`` and the like: those are not views)."""
    return sorted((n for n in storage.listdir(folder) if _VIEW.match(n)), key=lambda n: int(n[5:]))


def _read_view(folder: str) -> torch.Tensor:
    return torch.stack([read_image(storage.join(folder, name))[0] for name in list_frames(folder)])


def _resize(frames: torch.Tensor, size: int | None) -> torch.Tensor:
    """Frames ``(T, H, W, 3)`` at ``size`` x ``size`` (antialiased bicubic, clamped like 8-bit PIL)."""
    if size is None or frames.shape[1:3] == (size, size):
        return frames
    x = F.interpolate(
        frames.permute(0, 3, 1, 2), size=(size, size), mode="bicubic", antialias=True, align_corners=False
    )
    return x.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()


def _check_inputs(pred: str, gt: str) -> list[str]:
    """The ground truth's views, after checking that the prediction has each, with as many frames."""
    gt_views = _views(gt)
    if not gt_views:
        raise InputError("no eval_<k> folders in the ground truth", uri=gt)
    for view in gt_views:
        if not storage.isdir(storage.join(pred, view)):
            raise InputError(f"the prediction has no {view}/", uri=pred)
        n_pred, n_gt = len(list_frames(storage.join(pred, view))), len(list_frames(storage.join(gt, view)))
        if n_pred != n_gt:
            raise InputError(f"{view}: prediction has {n_pred} frames, ground truth {n_gt}", uri=pred)
        if n_gt == 0:
            raise InputError(f"{view}: no frames", uri=gt)
    return gt_views


def _load_models(config: MetricsConfig, device: torch.device, missing: dict[str, str]) -> dict:
    """The networks the wanted metrics need; a metric whose weights fail to load goes to ``missing``."""
    wanted = [m for m in METRICS if m in config.compute and m not in missing]
    models: dict = {}
    loaders = {
        "lpips": (("lpips",), lambda: _lpips(config.lpips_vgg, config.lpips_heads, str(device))),
        "clip": (
            ("clip", "clip_f"),
            lambda: _clip(config.clip_model, config.clip_revision, config.download, str(device)),
        ),
        "fvd": (("fvd",), lambda: _i3d(config.fvd_i3d, str(device))),
    }
    for key, (metrics, load) in loaders.items():
        needed = [m for m in metrics if m in wanted]
        if not needed:
            continue
        try:
            models[key] = load()
        except MissingWeights as exc:
            for m in needed:
                missing[m] = exc.reason
    return models


def _score_view(
    guess: torch.Tensor, truth: torch.Tensor, wanted: set[str], models: dict, config: MetricsConfig
) -> dict:
    """Every wanted metric of one view (frames already at the scoring size); None where not computed."""
    values: dict[str, float | None] = dict.fromkeys(METRICS)
    if "psnr" in wanted:
        values["psnr"] = _finite_mean(psnr(guess, truth))
    if "ssim" in wanted:
        values["ssim"] = float(ssim(guess, truth).mean())
    if "lpips" in wanted:
        values["lpips"] = float(lpips_per_frame(models["lpips"], guess, truth, config.batch_size).mean())
    if wanted & {"clip", "clip_f"}:
        e_pred = clip_metric.embed(models["clip"], guess, config.batch_size)
        if "clip" in wanted:
            e_true = clip_metric.embed(models["clip"], truth, config.batch_size)
            values["clip"] = float(clip_metric.clip_similarity(e_pred, e_true).mean())
        if "clip_f" in wanted and len(guess) > 1:
            values["clip_f"] = float(clip_metric.clip_f(e_pred).mean())
    if "fvd" in wanted:
        values["fvd"] = fvd(models["fvd"], guess, truth)
    return values


def evaluate_views(pred: str, gt: str, config: MetricsConfig | None = None) -> dict:
    """Every metric of ``pred`` against ``gt``, averaged over frames, then views (DESIGN.md §7).

    Views or frames that one side lacks, or images of different sizes, are input errors that name
    the view: a score over a partial set would not be comparable with other methods'.
    """
    config = config or MetricsConfig()
    unknown = [m for m in config.compute if m not in METRICS]
    if unknown:
        raise InputError(
            f"unknown metric {', '.join(unknown)}; expected some of {', '.join(METRICS)}", field="metrics.compute"
        )
    gt_views = _check_inputs(pred, gt)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    missing = {m: "not computed: left out of metrics.compute" for m in METRICS if m not in config.compute}
    models = _load_models(config, device, missing)
    per_view: dict[str, dict[str, float | None]] = {}
    for view in gt_views:
        truth = _read_view(storage.join(gt, view))
        guess = _read_view(storage.join(pred, view))
        if guess.shape != truth.shape:
            raise InputError(
                f"{view}: prediction {tuple(guess.shape[:3])} vs ground truth {tuple(truth.shape[:3])} "
                "(frames, height, width)",
                uri=pred,
            )
        guess, truth = _resize(guess, config.size).to(device), _resize(truth, config.size).to(device)
        wanted = {m for m in METRICS if m not in missing}
        with _full_float32():
            values = _score_view(guess, truth, wanted, models, config)
        for name in wanted:
            if values[name] is None:
                missing[name] = f"{view} has a single frame: CLIP-F compares adjacent frames"
            elif not math.isfinite(values[name]):
                missing[name] = f"not finite on {view} ({values[name]}): check the weights of this metric"
        per_view[view] = values
    per_view = {view: {m: None if m in missing else v for m, v in values.items()} for view, values in per_view.items()}
    means = {m: None if m in missing else statistics.fmean(v[m] for v in per_view.values()) for m in METRICS}
    return {**means, "views": per_view, "missing": missing}


def object_folders(pred: str, gt: str) -> dict[str, tuple[str, str]]:
    """``{object: (pred folder, gt folder)}`` for one object folder (holding ``eval_<k>``) or a folder
    of object folders (``<obj>/eval_<k>``); every object of the ground truth must be predicted."""
    if not storage.isdir(gt):
        raise InputError("ground-truth folder not found", uri=gt)
    if not storage.isdir(pred):
        raise InputError("prediction folder not found", uri=pred)
    if _views(gt):
        return {gt.rstrip("/").rsplit("/", 1)[-1] or gt: (pred, gt)}
    names = [n for n in storage.listdir(gt) if not n.startswith(".") and _views(storage.join(gt, n))]
    if not names:
        raise InputError(
            "no eval_<k> folders, nor object folders holding them (Consistent4D layout <obj>/eval_<k>/<frame>.png)",
            uri=gt,
        )
    for name in names:
        if not storage.isdir(storage.join(pred, name)):
            raise InputError(f"the prediction has no folder {name}/", uri=pred, item=name)
    return {name: (storage.join(pred, name), storage.join(gt, name)) for name in names}


def evaluate_objects(pred: str, gt: str, config: MetricsConfig | None = None) -> dict:
    """:func:`evaluate_views` of every object (see :func:`object_folders`), and the mean over objects.

    Returns ``{"objects": {name: evaluate_views result}, "mean": {metric: float | None},
    "missing": {metric: reason}}``; a mean is None when any object lacks the metric. Errors name
    the object.
    """
    results = {}
    for name, (p, g) in object_folders(pred, gt).items():
        try:
            results[name] = evaluate_views(p, g, config)
        except InputError as exc:
            raise exc.within(item=name) from None
    mean: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    for metric in METRICS:
        lacking = [n for n, r in results.items() if r[metric] is None]
        if not lacking:
            mean[metric] = statistics.fmean(r[metric] for r in results.values())
            continue
        mean[metric] = None
        reasons = {results[n]["missing"][metric] for n in lacking}
        reason = reasons.pop() if len(reasons) == 1 else results[lacking[0]]["missing"][metric]
        missing[metric] = (
            reason if len(lacking) == len(results) else f"not computed for {', '.join(lacking)} ({reason})"
        )
    return {"objects": results, "mean": mean, "missing": missing}


def _finite_mean(values: torch.Tensor) -> float:
    """Mean PSNR over frames; a frame identical to the truth (inf) counts as 100 dB, by convention."""
    return (
        float(torch.where(torch.isinf(values), torch.full_like(values, 100.0), values).mean())
        if len(values)
        else math.nan
    )
