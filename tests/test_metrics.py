"""PSNR and SSIM, and the Consistent4D averaging over frames then views."""

import math

import numpy as np
import pytest
import torch

from align4d_core.config import MetricsConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.media import read_video, write_frames
from align4d_core.metrics import evaluate_views, psnr, ssim


def images(seed, n=3, size=24):
    return torch.rand(n, size, size, 3, generator=torch.Generator().manual_seed(seed))


def test_psnr_is_the_textbook_formula():
    a, b = images(0), images(1)
    for i in range(3):
        mse = np.mean((a[i].numpy().astype(np.float64) - b[i].numpy().astype(np.float64)) ** 2)
        assert float(psnr(a, b)[i]) == pytest.approx(10 * math.log10(1 / mse), rel=1e-9)
    assert torch.isinf(psnr(a, a)).all()


def test_ssim_is_one_for_equal_images_and_falls_with_noise():
    a = images(2, size=32)
    assert torch.allclose(ssim(a, a), torch.ones(3, dtype=torch.float64))
    noisy = (a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    noisier = (a + 0.2 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    assert bool((ssim(noisy, a) > ssim(noisier, a)).all()) and bool((ssim(noisy, a) < 1).all())


def test_ssim_in_float32_agrees_with_float64():
    from torchmetrics.functional.image import structural_similarity_index_measure

    a = images(4, n=4, size=64)
    b = (a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(5))).clamp(0, 1)
    reference = structural_similarity_index_measure(
        b.permute(0, 3, 1, 2).double(), a.permute(0, 3, 1, 2).double(), data_range=1.0, reduction="none"
    )
    assert torch.allclose(ssim(b, a), reference, atol=1e-5)


def test_protocol_averages_frames_then_views(tmp_path):
    pred, gt = str(tmp_path / "pred"), str(tmp_path / "gt")
    truths = [images(10 + k, n=2) for k in range(2)]
    guesses = [(t + 0.1 * k + 0.02).clamp(0, 1) for k, t in enumerate(truths)]
    for k in range(2):
        write_frames(storage.join(gt, f"eval_{k}"), truths[k])
        write_frames(storage.join(pred, f"eval_{k}"), guesses[k])
    absent = str(tmp_path / "no-weights")
    config = MetricsConfig(size=None, lpips_vgg=absent, clip_model=absent, fvd_i3d=absent, protocol="clean")
    result = evaluate_views(pred, gt, config)
    per_view = []  # from the PNGs as written (8-bit), frames first, then views
    for k in range(2):
        p = read_video(storage.join(pred, f"eval_{k}")).frames
        t = read_video(storage.join(gt, f"eval_{k}")).frames
        per_view.append(float(psnr(p, t).mean()))
    assert result["psnr"] == pytest.approx(sum(per_view) / 2, rel=1e-9)
    assert set(result["views"]) == {"eval_0", "eval_1"}
    for name in ("lpips", "clip", "clip_f", "fvd"):  # no weights there: missing with the reason, never a number
        assert result[name] is None and absent in result["missing"][name]
        assert all(v[name] is None for v in result["views"].values())
    assert set(result["missing"]) == {"lpips", "clip", "clip_f", "fvd"}


def test_protocol_refuses_partial_predictions(tmp_path):
    gt, pred = str(tmp_path / "gt"), str(tmp_path / "pred")
    write_frames(storage.join(gt, "eval_0"), images(1, n=2))
    write_frames(storage.join(gt, "eval_1"), images(2, n=2))
    write_frames(storage.join(pred, "eval_0"), images(3, n=2))
    with pytest.raises(InputError, match="no eval_1"):
        evaluate_views(pred, gt)
    write_frames(storage.join(pred, "eval_1"), images(4, n=3))
    with pytest.raises(InputError, match="eval_1: prediction has 3 frames, ground truth 2"):
        evaluate_views(pred, gt)
    storage.remove(storage.join(pred, "eval_1"), recursive=True)
    write_frames(storage.join(pred, "eval_1"), images(4, n=2, size=32))
    at_own_size = MetricsConfig(size=None, compute=("psnr",))
    with pytest.raises(InputError, match=r"eval_1: prediction \(2, 32, 32\) vs ground truth \(2, 24, 24\)"):
        evaluate_views(pred, gt, at_own_size)
    # resized to one scoring size, as Consistent4D's script resizes both to 512, sizes may differ
    assert evaluate_views(pred, gt, MetricsConfig(compute=("psnr",)))["psnr"] > 0
