"""The Consistent4D evaluation protocol on folders: per frame, then per view, then per object.

A prediction folder and a ground-truth folder both hold ``eval_<k>/<frame>.png`` (k = 0..3 for the
azimuths -75, 15, 105, 195). Two arithmetics are offered (``MetricsConfig.protocol``):

* ``consistent4d`` (default): Consistent4D's own scripts step for step (:mod:`.consistent4d`):
  8-bit PIL resize to 512, PSNR/SSIM on 0–255 values with the data range taken from the frame,
  LPIPS on ``x/127.5 − 1``, CLIPImageProcessor, the FVD script's float resize to 224. These are the
  numbers the literature's Table II reports.
* ``clean``: float bicubic resize, PSNR and SSIM with data range 1, CLIP's preprocessing in torch.
  Scores of a prediction that does not depend on its contrast; not comparable with Table II
  (about 1 dB higher PSNR on typical renders).

Each metric is averaged over the frames of a view (FVD per view), then over the views. FVD's
definition (docs/method.md "FVD"): per view, one I3D logit vector per side, and the Fréchet distance
of two single samples, |Δμ|² (:mod:`.fvd`); the run's tables also give the pooled FVD of all views
and items (:func:`pooled_fvd`), from the I3D logits each result keeps.

The result (``metrics.json``; other modules read exactly these keys)::

    {"psnr": float | None, "ssim": ..., "lpips": ..., "clip": ..., "clip_f": ..., "fvd": ...,
     "views": {"eval_0": {"psnr": float | None, ...}, ...},
     "missing": {metric: reason}, "protocol": "consistent4d", "size": 512 | None,
     "frames": int, "i3d": {"pred": {view: [400 floats]}, "gt": {...}} (when FVD was computed)}

A metric is a float or None, and None always has its reason under ``missing``: weights that are
not on this machine, a metric left out of ``MetricsConfig.compute``, or a value that was not finite.
The networks load once per process and device (a small cache keyed by their locations); the ground
truth's CLIP and I3D features once per view and protocol (:mod:`.reference`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from align4d_core.config import METRICS, MetricsConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.media import decode_image, list_frames
from align4d_core.metrics import clip as clip_metric
from align4d_core.metrics import consistent4d as c4d
from align4d_core.metrics.frechet import frechet_distance
from align4d_core.metrics.fvd import i3d_logits, i3d_logits_of
from align4d_core.metrics.i3d import load_i3d
from align4d_core.metrics.images import psnr, ssim
from align4d_core.metrics.lpips import load_lpips
from align4d_core.metrics.reference import FeatureCache, feature_key
from align4d_core.metrics.weights import MissingWeights

PROTOCOLS = ("consistent4d", "clean")
"""``MetricsConfig.protocol``: Consistent4D's scripts' arithmetic, or float resize with data range 1."""

FVD_DEFINITION = "per view: |Δ I3D logits|² of one video per side (Fréchet distance with zero covariances)"
"""What the ``fvd`` figure of a result is (docs/method.md, "FVD")."""

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
def _i3d_model(path: str | None, device: str):
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


@dataclass
class ViewFrames:
    """One view's frames as the protocol scores them."""

    pixels: Tensor  # (T, S, S, 3) float32 in [0, 1] at the scoring size
    native_shape: tuple[int, int, int]  # (T, H, W) of the files
    digest: str  # sha256 of the files' names and bytes, in time order
    u8: Tensor | None = None  # consistent4d: the 8-bit resized frames the script scores
    resized: list[Image.Image] | None = None  # consistent4d: CLIP's input
    native: list[Image.Image] | None = None  # consistent4d: FVD's input


def _resize(frames: Tensor, size: int | None) -> Tensor:
    """Frames ``(T, H, W, 3)`` at ``size`` x ``size`` (antialiased bicubic, clamped like 8-bit PIL)."""
    if size is None or frames.shape[1:3] == (size, size):
        return frames
    x = F.interpolate(
        frames.permute(0, 3, 1, 2), size=(size, size), mode="bicubic", antialias=True, align_corners=False
    )
    return x.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()


def _read_view(folder: str, config: MetricsConfig) -> ViewFrames:
    names = list_frames(folder)
    digest = hashlib.sha256()
    blobs = []
    for name in names:
        data = storage.read_bytes(storage.join(folder, name))
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
        blobs.append((storage.join(folder, name), data))
    if config.protocol == "clean":
        frames = [decode_image(data, uri)[0] for uri, data in blobs]
        _require_one_size(folder, [tuple(f.shape[:2]) for f in frames])
        stacked = torch.stack(frames)
        return ViewFrames(_resize(stacked, config.size), tuple(stacked.shape[:3]), digest.hexdigest())
    native = [c4d.open_rgb(data, uri) for uri, data in blobs]
    _require_one_size(folder, [im.size[::-1] for im in native])
    resized = [c4d.resize(im, config.size) for im in native]
    u8 = c4d.to_uint8(resized)
    h, w = native[0].size[::-1]
    return ViewFrames(u8.float() / 255.0, (len(native), h, w), digest.hexdigest(), u8, resized, native)


def _require_one_size(folder: str, sizes: list[tuple[int, int]]) -> None:
    if len(set(sizes)) > 1:
        raise InputError(f"frames of different sizes in one view: {sorted(set(sizes))}", uri=folder)


def _check_inputs(preds: dict[str, str], gt: str) -> list[str]:
    """The ground truth's views, after checking that each prediction has each, with as many frames."""
    gt_views = _views(gt)
    if not gt_views:
        raise InputError("no eval_<k> folders in the ground truth", uri=gt)
    for view in gt_views:
        n_gt = len(list_frames(storage.join(gt, view)))
        if n_gt == 0:
            raise InputError(f"{view}: no frames", uri=gt)
        for pred in preds.values():
            if not storage.isdir(storage.join(pred, view)):
                raise InputError(f"the prediction has no {view}/", uri=pred)
            n_pred = len(list_frames(storage.join(pred, view)))
            if n_pred != n_gt:
                raise InputError(f"{view}: prediction has {n_pred} frames, ground truth {n_gt}", uri=pred)
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
        "fvd": (("fvd",), lambda: _i3d_model(config.fvd_i3d, str(device))),
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
    if "clip" in models and config.protocol == "consistent4d":
        models["clip_processor"] = c4d.clip_processor(config.clip_model, int(models["clip"].config.image_size))
    return models


# --- features of one view -------------------------------------------------------------------------


@torch.inference_mode()
def _clip_embeddings(frames: ViewFrames, models: dict, config: MetricsConfig) -> Tensor:
    """Unit CLIP embeddings ``(T, D)`` (float64) of one view's frames, by the protocol's preprocessing."""
    model = models["clip"]
    if config.protocol == "clean":
        return clip_metric.embed(model, frames.pixels, config.batch_size)
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(frames.resized), config.batch_size):
        pixels = c4d.clip_pixels(models["clip_processor"], frames.resized[i : i + config.batch_size])
        out.append(model(pixel_values=pixels.to(device)).image_embeds.double().cpu())
    return F.normalize(torch.cat(out), dim=-1)


def _i3d_features(frames: ViewFrames, models: dict, config: MetricsConfig) -> Tensor:
    """The ``(1, 400)`` I3D logits of one view (float64)."""
    if config.protocol == "clean":
        return i3d_logits(models["fvd"], frames.pixels)
    return i3d_logits_of(models["fvd"], c4d.fvd_video(frames.native))


def _cached(cache: FeatureCache, kind: str, frames: ViewFrames, models: dict, config: MetricsConfig) -> Tensor:
    """The ground truth's ``kind`` features (``clip`` or ``i3d``), once per view, protocol and network."""
    network = (config.clip_model, config.clip_revision) if kind == "clip" else config.fvd_i3d
    key = feature_key(kind, frames.digest, protocol=config.protocol, size=config.size, network=network)
    value = cache.get(key)
    if value is None:
        value = (_clip_embeddings if kind == "clip" else _i3d_features)(frames, models, config)
        cache.put(key, value)
    return value


# --- scoring ----------------------------------------------------------------------------------------


def _image_scores(guess: ViewFrames, truth: ViewFrames, wanted: set[str], config: MetricsConfig) -> dict:
    values: dict[str, float | None] = {}
    clean = config.protocol == "clean"
    if "psnr" in wanted:
        values["psnr"] = _finite_mean(psnr(guess.pixels, truth.pixels) if clean else c4d.psnr(guess.u8, truth.u8))
    if "ssim" in wanted:
        values["ssim"] = float((ssim(guess.pixels, truth.pixels) if clean else c4d.ssim(guess.u8, truth.u8)).mean())
    return values


@torch.inference_mode()
def _lpips_scores(guesses: dict[str, ViewFrames], truth: ViewFrames, model, batch: int) -> dict[str, float]:
    """LPIPS of every prediction of one view; the ground truth's VGG features once per frame batch."""
    device = next(model.parameters()).device
    per_frame: dict[str, list[Tensor]] = {name: [] for name in guesses}
    for i in range(0, len(truth.pixels), batch):
        reference = model.features(truth.pixels[i : i + batch].to(device))
        for name, guess in guesses.items():
            features = model.features(guess.pixels[i : i + batch].to(device))
            per_frame[name].append(model.distance(features, reference).double().cpu())
        del reference
    return {name: float(torch.cat(values).mean()) for name, values in per_frame.items()}


def evaluate_many(
    preds: dict[str, str], gt: str, config: MetricsConfig | None = None, cache: FeatureCache | None = None
) -> dict[str, dict]:
    """:func:`evaluate_views` of several predictions of one object against its ground truth.

    The ground truth is read once per view, and its features once for all predictions: CLIP and I3D
    through ``cache`` (also across calls and processes, see :mod:`.reference`), LPIPS's VGG features
    in memory one frame batch at a time.
    """
    config = config or MetricsConfig()
    if config.protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {config.protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    unknown = [m for m in config.compute if m not in METRICS]
    if unknown:
        raise InputError(
            f"unknown metric {', '.join(unknown)}; expected some of {', '.join(METRICS)}", field="metrics.compute"
        )
    cache = cache if cache is not None else FeatureCache()
    gt_views = _check_inputs(preds, gt)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    base_missing = {m: "not computed: left out of metrics.compute" for m in METRICS if m not in config.compute}
    models = _load_models(config, device, base_missing)
    wanted = {m for m in METRICS if m not in base_missing}
    missing = {name: dict(base_missing) for name in preds}
    per_view: dict[str, dict[str, dict]] = {name: {} for name in preds}
    logits: dict[str, dict[str, dict[str, list[float]]]] = {name: {"pred": {}, "gt": {}} for name in preds}
    frames: dict[str, int] = {}
    for view in gt_views:
        truth = _read_view(storage.join(gt, view), config)
        guesses = {name: _read_view(storage.join(pred, view), config) for name, pred in preds.items()}
        for name, guess in guesses.items():
            if config.size is None and guess.native_shape != truth.native_shape:
                raise InputError(
                    f"{view}: prediction {guess.native_shape} vs ground truth {truth.native_shape} "
                    "(frames, height, width)",
                    uri=preds[name],
                )
        frames[view] = len(truth.pixels)
        with _full_float32():
            values = {name: {m: None for m in METRICS} for name in preds}
            for name, guess in guesses.items():
                values[name].update(_image_scores(guess, truth, wanted, config))
            if "lpips" in wanted:
                for name, score in _lpips_scores(guesses, truth, models["lpips"], config.batch_size).items():
                    values[name]["lpips"] = score
            if wanted & {"clip", "clip_f"}:
                reference = _cached(cache, "clip", truth, models, config) if "clip" in wanted else None
                for name, guess in guesses.items():
                    embeds = _clip_embeddings(guess, models, config)
                    if reference is not None:
                        values[name]["clip"] = float(clip_metric.clip_similarity(embeds, reference).mean())
                    if "clip_f" in wanted and len(embeds) > 1:
                        values[name]["clip_f"] = float(clip_metric.clip_f(embeds).mean())
            if "fvd" in wanted:
                reference = _cached(cache, "i3d", truth, models, config)
                for name, guess in guesses.items():
                    mine = _i3d_features(guess, models, config)
                    values[name]["fvd"] = frechet_distance(mine, reference)
                    logits[name]["pred"][view] = mine.reshape(-1).tolist()
                    logits[name]["gt"][view] = reference.reshape(-1).tolist()
        for name in preds:
            for metric in wanted:
                value = values[name][metric]
                if value is None:
                    missing[name][metric] = f"{view} has a single frame: CLIP-F compares adjacent frames"
                elif not math.isfinite(value):
                    missing[name][metric] = f"not finite on {view} ({value}): " + _why_not_finite(metric, config)
            per_view[name][view] = values[name]
    return {
        name: _result(per_view[name], missing[name], logits[name] if "fvd" in wanted else None, frames, config)
        for name in preds
    }


def _result(views: dict, missing: dict, logits: dict | None, frames: dict, config: MetricsConfig) -> dict:
    views = {view: {m: None if m in missing else v for m, v in values.items()} for view, values in views.items()}
    means = {m: None if m in missing else statistics.fmean(v[m] for v in views.values()) for m in METRICS}
    counts = sorted(set(frames.values()))
    result = {
        **means,
        "views": views,
        "missing": missing,
        "protocol": config.protocol,
        "size": config.size,
        "frames": counts[0] if len(counts) == 1 else counts,
    }
    if logits is not None and "fvd" not in missing:
        result["i3d"] = logits
    return result


def evaluate_views(pred: str, gt: str, config: MetricsConfig | None = None, cache: FeatureCache | None = None) -> dict:
    """Every metric of ``pred`` against ``gt``, averaged over frames, then views (DESIGN.md §7).

    Views or frames that one side lacks, or (when scoring at the files' own size) images of
    different sizes, are input errors that name the view: a score over a partial set would not be
    comparable with other methods'.
    """
    return evaluate_many({"pred": pred}, gt, config, cache)["pred"]


def pooled_fvd(results: list[dict]) -> float | None:
    """FVD over the pool of every view of every result: one Gaussian per side fitted over all videos.

    ``results`` are :func:`evaluate_views` results that kept their I3D logits; None when any lacks
    them. With N videos per side the covariance has rank ≤ N − 1 (of 400), which
    :func:`.frechet.frechet_distance` handles without the NaN of SciPy's ``sqrtm``.
    """
    pred, true = [], []
    for result in results:
        logits = result.get("i3d")
        if not logits:
            return None
        for view in sorted(logits["pred"]):
            pred.append(logits["pred"][view])
            true.append(logits["gt"][view])
    if not pred:
        return None
    return frechet_distance(torch.tensor(pred, dtype=torch.float64), torch.tensor(true, dtype=torch.float64))


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
    "missing": {metric: reason}, "fvd_pooled": float | None, ...}``; a mean is None when any
    object lacks the metric. Errors name the object.
    """
    return evaluate_methods({"pred": pred}, gt, config)["pred"]


def evaluate_methods(preds: dict[str, str], gt: str, config: MetricsConfig | None = None) -> dict[str, dict]:
    """:func:`evaluate_objects` of several predictions of the same ground truth, which is read and
    featurised once per object for all of them (:func:`evaluate_many`)."""
    config = config or MetricsConfig()
    folders = {name: object_folders(pred, gt) for name, pred in preds.items()}
    objects = next(iter(folders.values()))
    results: dict[str, dict[str, dict]] = {name: {} for name in preds}
    cache = FeatureCache()
    for obj, (_, g) in objects.items():
        try:
            scored = evaluate_many({name: folders[name][obj][0] for name in preds}, g, config, cache)
        except InputError as exc:
            raise exc.within(item=obj) from None
        for name, result in scored.items():
            results[name][obj] = result
    return {name: _over_objects(results[name], config) for name in preds}


def _over_objects(results: dict[str, dict], config: MetricsConfig) -> dict:
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
    frames = sorted(
        {f for r in results.values() for f in (r["frames"] if isinstance(r["frames"], list) else [r["frames"]])}
    )
    return {
        "objects": results,
        "mean": mean,
        "missing": missing,
        "fvd_pooled": pooled_fvd(list(results.values())) if "fvd" not in missing else None,
        "protocol": config.protocol,
        "size": config.size,
        "frames": frames[0] if len(frames) == 1 else frames,
    }


def _finite_mean(values: torch.Tensor) -> float:
    """Mean PSNR over frames; a frame identical to the truth (+inf) counts as 100 dB, by convention.

    −inf and NaN stay: under ``consistent4d`` a ground-truth frame of one colour has data range 0,
    and the script's PSNR is then −inf (or NaN when the frames are equal); a mean that hides it
    would not be the script's number.
    """
    return (
        float(torch.where(torch.isposinf(values), torch.full_like(values, 100.0), values).mean())
        if len(values)
        else math.nan
    )


def _why_not_finite(metric: str, config: MetricsConfig) -> str:
    if metric in ("psnr", "ssim") and config.protocol == "consistent4d":
        return (
            "a ground-truth frame of a single colour has data range 0, where Consistent4D's arithmetic "
            "is undefined (use metrics.protocol: clean, data range 1)"
        )
    return "check the weights of this metric"
