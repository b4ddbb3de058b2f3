"""``metrics.protocol: consistent4d`` against Consistent4D's compute_image_level_metrics.py, redone here.

The reference below follows the script's steps with PIL and NumPy only (no torch, no torchmetrics):
``Image.open``, alpha 0 → white for RGBA (its ``rgba=True`` path), ``resize((512, 512))`` with PIL's
default filter on the 8-bit image, float 0–255, PSNR with the data range of the target frame, SSIM
(Gaussian 11, σ 1.5) with the larger of both frames' ranges, frames averaged per view, views summed
and divided by 4.
"""

import math

import numpy as np
import pytest
from PIL import Image

from align4d_core.config import MetricsConfig
from align4d_core.metrics import evaluate_views
from align4d_core.metrics.protocol import evaluate_objects

# --- the reference: the script's arithmetic in PIL + NumPy -----------------------------------------


def load(path, rgba: bool) -> np.ndarray:
    image = Image.open(path)
    if rgba:
        tmp = np.array(image)
        rgb, mask = tmp[..., :3], tmp[..., -1]
        rgb[mask == 0] = 255
        image = Image.fromarray(rgb)
    image = image.resize((512, 512))  # PIL's default filter, as the script calls it
    return np.array(image).astype(np.float64)


def gaussian_window() -> np.ndarray:
    x = np.arange(11) - 5.0
    g = np.exp(-0.5 * (x / 1.5) ** 2)
    return g / g.sum()


def filter_valid(image: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filtering of an (H, W) array."""
    rows = np.lib.stride_tricks.sliding_window_view(image, len(g), axis=1) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, len(g), axis=0) @ g


def ssim_reference(pred: np.ndarray, target: np.ndarray) -> float:
    data_range = max(pred.max() - pred.min(), target.max() - target.min())
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    g = gaussian_window()
    maps = []
    for c in range(3):
        x, y = pred[..., c], target[..., c]
        mx, my = filter_valid(x, g), filter_valid(y, g)
        sxx = filter_valid(x * x, g) - mx**2
        syy = filter_valid(y * y, g) - my**2
        sxy = filter_valid(x * y, g) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2)))
    return float(np.mean(maps))


def psnr_reference(pred: np.ndarray, target: np.ndarray) -> float:
    data_range = target.max() - target.min()
    return 10 * math.log10(data_range**2 / np.mean((pred - target) ** 2))


def script_scores(pred_root, gt_root, views: int, frames: int, rgba: bool) -> dict[str, float]:
    totals = {"psnr": 0.0, "ssim": 0.0}
    for k in range(views):
        per_frame = {"psnr": [], "ssim": []}
        for t in range(frames):
            p = load(pred_root / f"eval_{k}" / f"{t}.png", rgba)
            g = load(gt_root / f"eval_{k}" / f"{t}.png", rgba)
            per_frame["psnr"].append(psnr_reference(p, g))
            per_frame["ssim"].append(ssim_reference(p, g))
        for name in totals:
            totals[name] += np.mean(per_frame[name])
    return {name: value / 4 for name, value in totals.items()}  # the script divides by 4


# --- test data ------------------------------------------------------------------------------------


def smooth_image(rng: np.random.Generator, size: int, low: int, high: int) -> np.ndarray:
    """A smooth 8-bit RGB image (like a render) with values in [low, high]."""
    coarse = rng.random((size // 8 + 2, size // 8 + 2, 3))
    big = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    x = np.asarray(big, dtype=np.float64) / 255.0
    return np.round(low + (high - low) * x).astype(np.uint8)


def write_pair(root, size: int, low: int, high: int, rgba: bool, views=4, frames=2, seed=0):
    rng = np.random.default_rng(seed)
    for k in range(views):
        for side in ("gt", "pred"):
            (root / side / f"eval_{k}").mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            truth = smooth_image(rng, size, low, high)
            guess = np.clip(truth + rng.normal(0, 6, truth.shape), 0, 255).astype(np.uint8)
            if rgba:
                alpha = np.full(truth.shape[:2], 255, np.uint8)
                alpha[: size // 3] = 0  # a transparent band: its stored RGB must not count
                alpha[size // 3 : size // 3 + 4] = 128  # semi-transparent rows keep their RGB (no blending)
                truth_rgba = np.dstack([truth, alpha])
                guess_rgba = np.dstack([guess, alpha])
                guess_rgba[: size // 3, :, :3] = rng.integers(0, 256, (size // 3, size, 3))
                Image.fromarray(truth_rgba, "RGBA").save(root / "gt" / f"eval_{k}" / f"{t}.png")
                Image.fromarray(guess_rgba, "RGBA").save(root / "pred" / f"eval_{k}" / f"{t}.png")
            else:
                Image.fromarray(truth).save(root / "gt" / f"eval_{k}" / f"{t}.png")
                Image.fromarray(guess).save(root / "pred" / f"eval_{k}" / f"{t}.png")
    return root / "pred", root / "gt"


CASES = {
    "full range, 96 px": dict(size=96, low=0, high=255, rgba=False),
    "partial range 40-200, 96 px": dict(size=96, low=40, high=200, rgba=False),
    "rgba, 120 px": dict(size=120, low=0, high=255, rgba=True),
    "rgba partial range, 700 px": dict(size=700, low=30, high=220, rgba=True),
    "already 512 px": dict(size=512, low=10, high=250, rgba=False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_psnr_and_ssim_are_the_scripts_arithmetic(tmp_path, case):
    spec = CASES[case]
    pred, gt = write_pair(tmp_path, **spec)
    ours = evaluate_views(str(pred), str(gt), MetricsConfig(compute=("psnr", "ssim")))
    assert ours["protocol"] == "consistent4d" and ours["size"] == 512 and ours["frames"] == 2
    reference = script_scores(pred, gt, views=4, frames=2, rgba=spec["rgba"])
    assert abs(ours["psnr"] - reference["psnr"]) <= 0.01, (ours["psnr"], reference["psnr"])
    assert abs(ours["ssim"] - reference["ssim"]) <= 1e-4, (ours["ssim"], reference["ssim"])  # goal 0.001


def test_the_clean_protocol_differs_where_the_data_range_is_partial(tmp_path):
    """The quirk the protocol keeps: a frame spanning 40–200 has data range 160, not 255 (nor 1)."""
    pred, gt = write_pair(tmp_path, size=96, low=40, high=200, rgba=False)
    c4d = evaluate_views(str(pred), str(gt), MetricsConfig(compute=("psnr",)))
    clean = evaluate_views(str(pred), str(gt), MetricsConfig(compute=("psnr",), protocol="clean"))
    ratio_db = 20 * math.log10(255 / 160)  # ≈ 4.05 dB from the data range alone
    assert clean["protocol"] == "clean"
    assert clean["psnr"] - c4d["psnr"] == pytest.approx(ratio_db, abs=0.6)  # the rest: 8-bit vs float resize


def test_objects_are_averaged_like_the_script(tmp_path):
    for name, seed in (("dog", 1), ("cat", 2)):
        write_pair(tmp_path / name, size=64, low=0, high=255, rgba=False, seed=seed)
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for name in ("dog", "cat"):
        (tmp_path / name / "pred").rename(tmp_path / "pred" / name)
        (tmp_path / name / "gt").rename(tmp_path / "gt" / name)
    result = evaluate_objects(str(tmp_path / "pred"), str(tmp_path / "gt"), MetricsConfig(compute=("psnr", "ssim")))
    per_object = [script_scores(tmp_path / "pred" / n, tmp_path / "gt" / n, 4, 2, False) for n in ("dog", "cat")]
    assert abs(result["mean"]["psnr"] - np.mean([o["psnr"] for o in per_object])) <= 0.01
    assert abs(result["mean"]["ssim"] - np.mean([o["ssim"] for o in per_object])) <= 0.001
    assert result["protocol"] == "consistent4d" and result["frames"] == 2


def test_pil_default_resize_filter_is_bicubic():
    """The script relies on ``resize``'s default; we pass bicubic explicitly, so check they agree here."""
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    assert np.array_equal(np.array(image.resize((512, 512))), np.array(image.resize((512, 512), Image.BICUBIC)))


def test_a_ground_truth_frame_of_one_colour_is_reported_not_averaged(tmp_path):
    """The script's PSNR of a grey target frame is −inf (data range 0 over all channels): missing, with the reason;
    a prediction equal to its truth counts 100 dB, as in the clean protocol."""
    pred, gt = write_pair(tmp_path, size=32, low=0, high=255, rgba=False, views=4, frames=2)
    for side in (pred, gt):  # eval_0 frame 0: the same image on both sides
        Image.open(gt / "eval_0" / "0.png").save(side / "eval_0" / "0.png")
    equal = evaluate_views(str(pred), str(gt), MetricsConfig(compute=("psnr",)))
    frame1 = psnr_reference(load(pred / "eval_0" / "1.png", False), load(gt / "eval_0" / "1.png", False))
    assert equal["views"]["eval_0"]["psnr"] == pytest.approx((100.0 + frame1) / 2, abs=0.01)

    Image.new("RGB", (32, 32), (128, 128, 128)).save(gt / "eval_1" / "0.png")
    constant = evaluate_views(str(pred), str(gt), MetricsConfig(compute=("psnr", "ssim")))
    assert constant["psnr"] is None and constant["ssim"] is not None
    assert "eval_1" in constant["missing"]["psnr"] and "data range 0" in constant["missing"]["psnr"]
