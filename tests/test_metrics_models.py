"""The metrics against independent implementations, and the networks through their real loaders.

PSNR and SSIM against scikit-image; the Fréchet distance against ``scipy.linalg.sqrtm``; LPIPS
against torchmetrics' own LPIPS module (given our VGG16 as its backbone, which it would otherwise
take from torchvision) and our VGG16 against a functional reference; CLIP against transformers'
``CLIPModel`` and ``CLIPImageProcessorPil``; I3D through torch's own strict loading. Weights are
random, full-size in the standard layouts (VGG16, I3D) or a tiny CLIP, written by the tests.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from align4d.cli import app
from align4d_core.config import MetricsConfig
from align4d_core.io import storage
from align4d_core.io.media import write_frames
from align4d_core.metrics import evaluate_views, frechet_distance, psnr, ssim
from align4d_core.metrics.clip import preprocess as clip_preprocess
from align4d_core.metrics.i3d import InceptionI3d, _same_pad, temporal_cells
from align4d_core.metrics.lpips import load_lpips, torchmetrics_heads
from align4d_core.metrics.protocol import METRICS
from align4d_core.metrics.vgg import CFG_D, LPIPS_TAPS, load_vgg16, vgg16_features

skimage_metrics = pytest.importorskip("skimage.metrics")
scipy_linalg = pytest.importorskip("scipy.linalg")

TORCHVISION_VGG16_FEATURES = [
    f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) for p in ("weight", "bias")
]
"""The keys of torchvision's ``vgg16().features`` state dict (convolutions at these indices)."""


def frames(seed: int, n: int = 3, size: int = 48, smooth: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size // 4 if smooth else size, size // 4 if smooth else size, generator=g)
    if smooth:  # natural-image-like content: low frequencies, for the resampling comparisons
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).contiguous()


def noisy(x: torch.Tensor, seed: int, amount: float = 0.08) -> torch.Tensor:
    return (x + amount * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


# --- weights written by the tests ----------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    """A torchvision-layout VGG16 file, a pytorch-i3d-layout I3D file and a tiny CLIP folder."""
    from transformers import CLIPConfig, CLIPModel

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    features = vgg16_features()
    for module in features.modules():  # torchvision's VGG initialisation: activations keep their scale
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)
    vgg = {f"features.{k}": v for k, v in features.state_dict().items()}
    vgg["classifier.6.weight"] = torch.randn(10, 4096)  # a whole vgg16 dict: only features.* is read
    vgg["classifier.6.bias"] = torch.zeros(10)
    torch.save(vgg, root / "vgg16.pth")

    i3d = InceptionI3d().state_dict()
    for key, value in i3d.items():  # He-initialised convolutions and BatchNorm statistics that are not the identity
        if key.endswith("conv3d.weight"):
            value.normal_(0, math.sqrt((1 if key.startswith("logits") else 2) / value[0].numel()))
        elif key.endswith("running_mean"):
            value.normal_(0, 0.1)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
    torch.save(
        {k: v for k, v in i3d.items() if not k.endswith("num_batches_tracked")}, root / "i3d.pt"
    )  # old files lack them

    config = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=99,
            max_position_embeddings=16,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            image_size=224,
            patch_size=32,
        ),
        projection_dim=24,
    )
    CLIPModel(config).eval().save_pretrained(root / "clip")
    return {"vgg": str(root / "vgg16.pth"), "i3d": str(root / "i3d.pt"), "clip": str(root / "clip")}


def full_config(weights: dict[str, str], **overrides) -> MetricsConfig:
    values = dict(
        lpips_vgg=weights["vgg"],
        clip_model=weights["clip"],
        fvd_i3d=weights["i3d"],
        size=64,
        device="cpu",
        protocol="clean",
    )
    return MetricsConfig(**{**values, **overrides})


def write_views(root, views: list[torch.Tensor]) -> str:
    for k, view in enumerate(views):
        write_frames(storage.join(str(root), f"eval_{k}"), view)
    return str(root)


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


# --- PSNR and SSIM against scikit-image ----------------------------------------------------------


@pytest.mark.parametrize("smooth", [False, True])
def test_psnr_and_ssim_match_scikit_image(smooth):
    truth = frames(1, size=64, smooth=smooth)
    guess = noisy(truth, 2)
    ours_psnr, ours_ssim = psnr(guess, truth), ssim(guess, truth)
    pad = 5  # the 11-tap Gaussian window's radius (σ 1.5, truncated at 3.5σ in both libraries)
    for i in range(len(truth)):
        p, t = guess[i].double().numpy(), truth[i].double().numpy()
        assert abs(float(ours_psnr[i]) - skimage_metrics.peak_signal_noise_ratio(t, p, data_range=1.0)) <= 1e-4
        # torchmetrics (as Consistent4D uses it) reflects the image at its borders and averages the
        # SSIM map over the whole image; scikit-image averages over the interior only. On the same
        # reflected image, scikit-image's map over the original pixels is our value:
        padded = [np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="reflect") for a in (p, t)]
        _, full_map = skimage_metrics.structural_similarity(
            padded[1],
            padded[0],
            data_range=1.0,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            full=True,
        )
        assert abs(float(ours_ssim[i]) - full_map[pad:-pad, pad:-pad].mean()) <= 1e-4
    # ... and on the interior, where no window reaches the border, the two maps are the same numbers
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, tm_map = structural_similarity_index_measure(
        guess.permute(0, 3, 1, 2).float(),
        truth.permute(0, 3, 1, 2).float(),
        data_range=1.0,
        reduction="none",
        return_full_image=True,
    )
    for i in range(len(truth)):
        interior = skimage_metrics.structural_similarity(
            truth[i].double().numpy(),
            guess[i].double().numpy(),
            data_range=1.0,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert abs(float(tm_map[i, :, pad:-pad, pad:-pad].mean()) - interior) <= 1e-4


def test_protocol_psnr_and_ssim_match_scikit_image_on_the_files(tmp_path):
    truths = [frames(10 + k) for k in range(2)]
    gt = write_views(tmp_path / "gt", truths)
    pred = write_views(tmp_path / "pred", [noisy(t, 20 + k) for k, t in enumerate(truths)])
    result = evaluate_views(pred, gt, MetricsConfig(compute=("psnr", "ssim"), size=None, protocol="clean"))
    per_view = {"psnr": [], "ssim": []}
    for k in range(2):
        scores = {"psnr": [], "ssim": []}
        for t in range(3):
            p, g = (
                read_png(tmp_path / "pred" / f"eval_{k}" / f"{t}.png"),
                read_png(tmp_path / "gt" / f"eval_{k}" / f"{t}.png"),
            )
            scores["psnr"].append(skimage_metrics.peak_signal_noise_ratio(g, p, data_range=1.0))
            pg = [np.pad(a, ((5, 5), (5, 5), (0, 0)), mode="reflect") for a in (p, g)]
            _, full_map = skimage_metrics.structural_similarity(
                pg[1],
                pg[0],
                data_range=1.0,
                channel_axis=2,
                full=True,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            scores["ssim"].append(full_map[5:-5, 5:-5].mean())
        for name in per_view:
            per_view[name].append(np.mean(scores[name]))
            assert abs(result["views"][f"eval_{k}"][name] - per_view[name][-1]) <= 1e-4
    assert abs(result["psnr"] - np.mean(per_view["psnr"])) <= 1e-4
    assert abs(result["ssim"] - np.mean(per_view["ssim"])) <= 1e-4
    assert result["missing"] == {
        m: "not computed: left out of metrics.compute" for m in ("lpips", "clip", "clip_f", "fvd")
    }


# --- the Fréchet distance against SciPy ---------------------------------------------------------


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy_linalg.sqrtm(sa @ sb)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2 * np.trace(np.real(root)))


@pytest.mark.parametrize("n, m, d", [(60, 45, 8), (200, 150, 16)])
def test_frechet_distance_matches_scipy(n, m, d):
    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(m, d)) @ rng.normal(size=(d, d)) * 0.7 + rng.normal(size=d)
    expected = scipy_frechet(a, b)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_single_vectors_is_their_squared_distance_never_nan():
    a, b = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 0.0, 3.0]])
    assert frechet_distance(a, b) == pytest.approx(5.0, rel=1e-12)  # common-metrics-on-video-quality's N=1 rule
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(torch.tensor([[math.nan, 0.0, 0.0]]), b)
    with pytest.raises(ValueError, match="feature sets"):
        frechet_distance(a, torch.zeros(1, 4))


# --- LPIPS ----------------------------------------------------------------------------------------


def test_vgg16_loads_torchvision_layout_and_matches_a_functional_reference(weights):
    state = torch.load(weights["vgg"], weights_only=True)
    assert sorted(k for k in state if k.startswith("features.")) == sorted(TORCHVISION_VGG16_FEATURES)
    model = load_vgg16(weights["vgg"])
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    taps, h, conv, index = [], x, 0, 0
    convs = [int(k.split(".")[1]) for k in TORCHVISION_VGG16_FEATURES[::2]]
    for item in CFG_D:  # the network written out with torch.nn.functional, layer by layer
        if item == "M":
            h, index = F.max_pool2d(h, 2, 2), index + 1
            continue
        i = convs[conv]
        h = F.relu(F.conv2d(h, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
        conv, index = conv + 1, index + 2
        if index - 1 in LPIPS_TAPS:
            taps.append(h)
    with torch.inference_mode():
        ours = model(x)
    assert len(ours) == len(taps) == 5
    for a, b in zip(ours, taps, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_lpips_matches_torchmetrics_lpips_with_the_same_backbone(weights, monkeypatch):
    import torchmetrics.functional.image.lpips as tm_lpips

    ours = load_lpips(weights["vgg"], None)
    backbone = vgg16_features()
    backbone.load_state_dict(
        {k[9:]: v for k, v in torch.load(weights["vgg"], weights_only=True).items() if k.startswith("features.")}
    )
    monkeypatch.setattr(tm_lpips, "_get_tv_model_features", lambda net, pretrained=False: backbone)
    reference = tm_lpips._LPIPS(pretrained=True, net="vgg").eval()  # its heads: the same vgg.pth
    a = frames(4, n=3, size=64)
    b = noisy(a, 5, 0.2)
    with torch.inference_mode():
        expected = reference(a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2), normalize=True).flatten()
        got = ours(a, b)
        assert float(ours(a, a).abs().max()) == 0.0
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert bool((got > 0).all())


# --- CLIP -------------------------------------------------------------------------------------------


def test_clip_preprocessing_matches_clip_image_processor():
    try:
        from transformers import CLIPImageProcessorPil
    except ImportError:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    processor = CLIPImageProcessorPil()  # OpenAI CLIP's defaults: shortest edge 224, bicubic, crop 224
    for size in (512, 96):
        image = (frames(7, n=1, size=size, smooth=True)[0] * 255).round().byte()
        expected = processor(Image.fromarray(image.numpy()), return_tensors="pt")["pixel_values"]
        ours = clip_preprocess(image[None].float() / 255, 224)
        difference = (ours - expected).abs()
        # the processor rounds the resized image to 8 bits (1/255/σ ≈ 0.015 after normalisation)
        assert float(difference.max()) < 0.02 and float(difference.mean()) < 0.005


# --- every metric end to end through the real loaders ------------------------------------------


def test_every_metric_through_the_real_loaders(weights, tmp_path):
    from transformers import CLIPModel

    truths = [frames(30 + k, smooth=True) for k in range(2)]
    gt = write_views(tmp_path / "gt", truths)
    pred = write_views(tmp_path / "pred", [noisy(t, 40 + k, 0.1) for k, t in enumerate(truths)])
    config = full_config(weights)
    result = evaluate_views(pred, gt, config)
    assert result["missing"] == {}
    assert all(isinstance(result[m], float) and math.isfinite(result[m]) for m in METRICS)
    assert set(result["views"]) == {"eval_0", "eval_1"}

    # the references: transformers' whole CLIPModel and torch's own strict loading of the I3D file
    from align4d_core.metrics.protocol import _read_view

    clip = CLIPModel.from_pretrained(weights["clip"]).eval()
    i3d = InceptionI3d()
    i3d.load_state_dict(torch.load(weights["i3d"], weights_only=True))
    i3d.eval()
    expected = {"clip": [], "clip_f": [], "fvd": []}
    for k in range(2):
        p = _read_view(f"{pred}/eval_{k}", config).pixels  # read and resized to 64 px (clean)
        g = _read_view(f"{gt}/eval_{k}", config).pixels
        with torch.inference_mode():
            ep = clip.get_image_features(pixel_values=clip_preprocess(p, 224))
            eg = clip.get_image_features(pixel_values=clip_preprocess(g, 224))
            ep, eg = (e if torch.is_tensor(e) else e.pooler_output for e in (ep, eg))
            expected["clip"].append(float(F.cosine_similarity(ep, eg).mean()))
            expected["clip_f"].append(float(F.cosine_similarity(ep[1:], ep[:-1]).mean()))
            to_i3d = [
                F.interpolate(v.permute(0, 3, 1, 2), size=(224, 224), mode="bicubic", antialias=True) * 2 - 1
                for v in (p, g)
            ]
            logits = [i3d(v.permute(1, 0, 2, 3)[None]).double() for v in to_i3d]
        expected["fvd"].append(float((logits[0] - logits[1]).pow(2).sum()))  # one video per side: |Δμ|²
        for name in expected:
            assert result["views"][f"eval_{k}"][name] == pytest.approx(expected[name][-1], rel=1e-5, abs=1e-7)
    for name in expected:
        assert result[name] == pytest.approx(float(np.mean(expected[name])), rel=1e-5, abs=1e-7)
    assert result["fvd"] > 0 and result["lpips"] > 0

    same = evaluate_views(gt, gt, config)  # a perfect prediction
    assert same["psnr"] == 100.0 and same["ssim"] == pytest.approx(1.0)
    assert same["lpips"] == pytest.approx(0.0, abs=1e-7) and same["fvd"] == pytest.approx(0.0, abs=1e-9)
    assert same["clip"] == pytest.approx(1.0, abs=1e-6)


def test_absent_or_broken_weights_are_missing_with_the_reason_and_the_rest_computes(weights, tmp_path):
    truths = [frames(50, n=2, size=32)]
    gt = write_views(tmp_path / "gt", truths)
    pred = write_views(tmp_path / "pred", [noisy(truths[0], 51)])
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "empty").mkdir()
    absent = str(tmp_path / "absent.pth")
    config = full_config(
        weights, lpips_vgg=absent, clip_model=str(tmp_path / "empty"), fvd_i3d=str(tmp_path / "broken.pt")
    )
    result = evaluate_views(pred, gt, config)
    assert isinstance(result["psnr"], float) and isinstance(result["ssim"], float)
    assert {m for m in METRICS if result[m] is None} == {"lpips", "clip", "clip_f", "fvd"} == set(result["missing"])
    assert (
        f"no VGG16 weights at {absent}" in result["missing"]["lpips"]
        and "metrics.lpips_vgg" in result["missing"]["lpips"]
    )
    assert str(tmp_path / "empty") in result["missing"]["clip"] and "metrics.clip_model" in result["missing"]["clip_f"]
    assert "broken.pt is not a readable torch state dict" in result["missing"]["fvd"]
    assert json.loads(json.dumps(result, allow_nan=False)) == result  # no NaN anywhere: metrics.json is strict JSON

    state = torch.load(weights["i3d"], weights_only=True)
    state["Mixed_5c.b0.conv3d.weight_renamed"] = state.pop("Mixed_5c.b0.conv3d.weight")
    torch.save(state, tmp_path / "renamed.pt")
    heads = torch.load(torchmetrics_heads(), map_location="cpu", weights_only=True)
    heads["lin0.model.1.weight"] = torch.full_like(heads["lin0.model.1.weight"], math.nan)
    torch.save(heads, tmp_path / "nan-heads.pth")
    config = full_config(
        weights,
        fvd_i3d=str(tmp_path / "renamed.pt"),
        lpips_heads=str(tmp_path / "nan-heads.pth"),
        compute=("psnr", "lpips", "fvd"),
    )
    result = evaluate_views(pred, gt, config)
    assert "not in the pytorch-i3d InceptionI3d layout" in result["missing"]["fvd"]
    assert "Mixed_5c.b0.conv3d.weight" in result["missing"]["fvd"]
    assert result["lpips"] is None and "not finite on eval_0" in result["missing"]["lpips"]
    assert result["missing"]["ssim"] == "not computed: left out of metrics.compute" and result["psnr"] is not None


def test_clip_f_of_a_single_frame_is_missing_with_the_reason(weights, tmp_path):
    gt = write_views(tmp_path / "gt", [frames(60, n=1, size=32)])
    result = evaluate_views(gt, gt, full_config(weights, compute=("clip", "clip_f")))
    assert result["clip"] == pytest.approx(1.0, abs=1e-6)
    assert result["clip_f"] is None and "single frame" in result["missing"]["clip_f"]


@pytest.mark.cuda
def test_cuda_scores_match_cpu(weights, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    truths = [frames(90 + k, smooth=True) for k in range(2)]
    gt = write_views(tmp_path / "gt", truths)
    pred = write_views(tmp_path / "pred", [noisy(t, 95 + k, 0.1) for k, t in enumerate(truths)])
    on_cpu = evaluate_views(pred, gt, full_config(weights))
    on_cuda = evaluate_views(pred, gt, full_config(weights, device="cuda"))
    assert on_cuda["missing"] == {} == on_cpu["missing"]
    for name in METRICS:  # IEEE float32 on both (no TF32): the same scores up to rounding
        assert on_cuda[name] == pytest.approx(on_cpu[name], rel=1e-4, abs=1e-6), name


def test_the_cpu_profile_scores_at_the_views_own_size():
    from align4d_core.config import build_run_config

    assert build_run_config("cuda").metrics == MetricsConfig() and MetricsConfig().size == 512  # DESIGN.md §7
    assert build_run_config("cpu").metrics.size is None
    assert build_run_config("cpu", {"metrics": {"size": 256}}).metrics.size == 256
    with pytest.raises(ValueError, match="MetricsConfig.lpips"):
        build_run_config("cpu", {"metrics": {"lpips": "vgg.pth"}})


def test_i3d_is_pytorch_i3d_layout():
    model = InceptionI3d()
    state = model.state_dict()
    shapes = {  # from pytorch-i3d's InceptionI3d(400, in_channels=3)
        "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
        "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
        "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
        "Mixed_4f.b3b.conv3d.weight": (128, 528, 1, 1, 1),
        "Mixed_5c.b0.conv3d.weight": (384, 832, 1, 1, 1),
        "Mixed_5c.b2b.bn.running_var": (128,),
        "logits.conv3d.weight": (400, 1024, 1, 1, 1),
        "logits.conv3d.bias": (400,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    blocks = {k.split(".")[0] for k in state}
    assert blocks == {
        "Conv3d_1a_7x7",
        "Conv3d_2b_1x1",
        "Conv3d_2c_3x3",
        "Mixed_3b",
        "Mixed_3c",
        "Mixed_4b",
        "Mixed_4c",
        "Mixed_4d",
        "Mixed_4e",
        "Mixed_4f",
        "Mixed_5b",
        "Mixed_5c",
        "logits",
    }
    assert not any(k.startswith("logits.bn") for k in state) and "Conv3d_1a_7x7.conv3d.bias" not in state
    # TensorFlow "SAME" padding: the odd cell goes after; stride 2 on 224 with a 7-tap kernel pads (2, 3)
    x = torch.zeros(1, 1, 4, 224, 224)
    assert _same_pad(x, (7, 7, 7), (2, 2, 2)).shape[2:] == (4 + 5, 224 + 5, 224 + 5)
    assert _same_pad(x, (3, 3, 3), (1, 1, 1)).shape[2:] == (6, 226, 226)
    assert [temporal_cells(t) for t in (1, 8, 16, 17, 32)] == [1, 1, 2, 3, 4]


# --- align4d evaluate -------------------------------------------------------------------------------


def test_evaluate_command_scores_objects_and_reports_bad_input(weights, tmp_path):
    runner = CliRunner()
    for obj, seed in (("cat", 70), ("dog", 80)):
        truths = [frames(seed + k, n=2, size=32) for k in range(2)]
        write_views(tmp_path / "gt" / obj, truths)
        write_views(tmp_path / "pred" / obj, [noisy(t, seed + 5 + k) for k, t in enumerate(truths)])
    (tmp_path / "gt" / "eval_gt").mkdir()  # not a view, not an object: ignored
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"metrics:\n  size: null\n  lpips_vgg: {weights['vgg']}\n  fvd_i3d: {tmp_path / 'none.pt'}\n"
        f"  compute: [psnr, ssim, lpips, fvd]\n"
    )
    out = tmp_path / "scores.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(tmp_path / "pred"),
            "--gt",
            str(tmp_path / "gt"),
            "--config",
            str(settings),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert set(scores["objects"]) == {"cat", "dog"}
    for name in ("psnr", "ssim", "lpips"):
        assert scores["mean"][name] == pytest.approx(np.mean([scores["objects"][o][name] for o in ("cat", "dog")]))
    assert scores["mean"]["fvd"] is None and "no I3D weights at" in scores["missing"]["fvd"]
    assert "object cat" in result.output and "mean of 2" in result.output and "fvd missing" in result.output
    single = evaluate_views(
        str(tmp_path / "pred" / "dog"), str(tmp_path / "gt" / "dog"), MetricsConfig(size=None, compute=("psnr",))
    )
    assert scores["objects"]["dog"]["psnr"] == pytest.approx(single["psnr"], rel=1e-12)

    one = runner.invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(tmp_path / "pred" / "cat"),
            "--gt",
            str(tmp_path / "gt" / "cat"),
            "--config",
            str(settings),
        ],
    )
    assert one.exit_code == 0 and "object cat" in one.output and "mean of" not in one.output

    storage.remove(str(tmp_path / "pred" / "dog" / "eval_1"), recursive=True)
    bad = runner.invoke(
        app, ["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--config", str(settings)]
    )
    assert bad.exit_code == 2
    assert (
        "item 'dog'" in bad.output and "the prediction has no eval_1/" in bad.output and "Traceback" not in bad.output
    )
    missing = runner.invoke(app, ["evaluate", "--pred", str(tmp_path / "nowhere"), "--gt", str(tmp_path / "gt")])
    assert missing.exit_code == 2 and "prediction folder not found" in missing.output


# --- the consistent4d protocol's networks, as Consistent4D's scripts feed them ---------------------


def _script_video(paths) -> torch.Tensor:
    """compute_fvd.py's read_video_frames: convert('RGB'), per-channel float (mode F) bicubic to 224."""
    video = []
    for path in paths:
        rgb = np.array(Image.open(path).convert("RGB")).astype(np.float32)
        channels = [
            np.asarray(Image.fromarray(rgb[:, :, c], mode="F").resize((224, 224), resample=3)).reshape(224, 224, 1)
            for c in range(3)
        ]
        video.append(np.concatenate(channels, axis=2))
    x = torch.as_tensor(np.stack(video)).float() / 127.5 - 1
    return x.unsqueeze(0).permute(0, 4, 1, 2, 3)


def test_consistent4d_protocol_feeds_clip_lpips_and_i3d_as_the_scripts_do(weights, tmp_path):
    from transformers import CLIPModel

    from align4d_core.metrics.consistent4d import _pil_clip_processor

    truths = [frames(70 + k, smooth=True) for k in range(2)]
    gt = write_views(tmp_path / "gt", truths)
    pred = write_views(tmp_path / "pred", [noisy(t, 80 + k, 0.1) for k, t in enumerate(truths)])
    config = full_config(weights, protocol="consistent4d", size=64)
    result = evaluate_views(pred, gt, config)
    assert result["missing"] == {} and result["protocol"] == "consistent4d" and result["frames"] == 3

    clip = CLIPModel.from_pretrained(weights["clip"]).eval()
    processor = _pil_clip_processor()()  # the script: CLIPImageProcessor.from_pretrained(ViT-B/32) = defaults
    lpips = load_lpips(weights["vgg"], None).eval()
    i3d = InceptionI3d()
    i3d.load_state_dict(torch.load(weights["i3d"], weights_only=True))
    i3d.eval()
    expected = {"clip": [], "lpips": [], "fvd": []}
    for k in range(2):
        names = [f"{t}.png" for t in range(3)]
        p_paths = [tmp_path / "pred" / f"eval_{k}" / n for n in names]
        g_paths = [tmp_path / "gt" / f"eval_{k}" / n for n in names]
        clips, dists = [], []
        for pp, gp in zip(p_paths, g_paths):
            p_img, g_img = Image.open(pp).resize((64, 64)), Image.open(gp).resize((64, 64))
            p_rgb = torch.from_numpy(np.array(p_img)).float().permute(2, 0, 1).unsqueeze(0)
            g_rgb = torch.from_numpy(np.array(g_img)).float().permute(2, 0, 1).unsqueeze(0)
            with torch.inference_mode():
                ep = clip.get_image_features(pixel_values=processor(p_img, return_tensors="pt")["pixel_values"])
                eg = clip.get_image_features(pixel_values=processor(g_img, return_tensors="pt")["pixel_values"])
                ep, eg = (e if torch.is_tensor(e) else e.pooler_output for e in (ep, eg))
                clips.append(float(F.cosine_similarity(ep, eg)))
                # LPIPS on x/127.5 - 1: our module takes [0, 1] and maps it to [-1, 1] itself
                a = ((p_rgb / 127.5 - 1) + 1) / 2
                b = ((g_rgb / 127.5 - 1) + 1) / 2
                dists.append(float(lpips(a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1))))
        expected["clip"].append(np.mean(clips))
        expected["lpips"].append(np.mean(dists))
        with torch.inference_mode():
            lp, lg = i3d(_script_video(p_paths)).double(), i3d(_script_video(g_paths)).double()
        expected["fvd"].append(float((lp - lg).pow(2).sum()))
        for name in expected:
            assert result["views"][f"eval_{k}"][name] == pytest.approx(expected[name][-1], rel=1e-4, abs=1e-6), name
    for name in expected:
        assert result[name] == pytest.approx(float(np.mean(expected[name])), rel=1e-4, abs=1e-6)
    assert len(result["i3d"]["pred"]["eval_0"]) == 400 and result["i3d"]["gt"]["eval_1"]


def test_ground_truth_features_are_computed_once_per_object_and_shared(weights, tmp_path):
    from align4d_core.metrics import evaluate_many
    from align4d_core.metrics.reference import FeatureCache

    truths = [frames(110 + k, smooth=True) for k in range(2)]
    gt = write_views(tmp_path / "gt", truths)
    preds = {
        f"m{i}": write_views(
            tmp_path / f"pred{i}", [noisy(t, 120 + 10 * i + k, 0.05 * (i + 1)) for k, t in enumerate(truths)]
        )
        for i in range(3)
    }
    config = full_config(weights, protocol="consistent4d", size=64)
    FeatureCache.forget()
    alone = {name: evaluate_views(p, gt, config, FeatureCache()) for name, p in preds.items()}  # the reference

    FeatureCache.forget()  # a worker per method, sharing a folder in storage (a new process each time)
    folder = str(tmp_path / "gt-features")
    first = FeatureCache(folder)
    result = evaluate_views(preds["m0"], gt, config, first)
    assert (first.misses, first.hits) == (4, 0)  # CLIP and I3D of two views, computed
    assert len(storage.listdir(folder)) == 4
    for name in ("m1", "m2"):
        FeatureCache.forget()
        later = FeatureCache(folder)
        again = evaluate_views(preds[name], gt, config, later)
        assert (later.misses, later.hits) == (0, 4)  # read back from storage
        for metric in METRICS:
            assert again[metric] == pytest.approx(alone[name][metric], rel=1e-9, abs=1e-12)
    assert result["fvd"] == pytest.approx(alone["m0"]["fvd"], rel=1e-9)

    together = evaluate_many(preds, gt, config)  # one pass: LPIPS's ground-truth features shared too
    for name in preds:
        for metric in METRICS:
            assert together[name][metric] == pytest.approx(alone[name][metric], rel=1e-6, abs=1e-9), (name, metric)

    write_frames(storage.join(gt, "eval_1"), noisy(truths[1], 999, 0.01))  # a changed ground truth
    FeatureCache.forget()
    changed = FeatureCache(folder)
    evaluate_views(preds["m0"], gt, config, changed)
    assert (changed.misses, changed.hits) == (2, 2)  # eval_1's features are new, eval_0's reused
    FeatureCache.forget()
    other = FeatureCache(folder)
    evaluate_views(preds["m0"], gt, full_config(weights, protocol="clean", size=64), other)
    assert other.hits == 0  # another protocol, other features


def test_pooled_fvd_fits_one_gaussian_over_every_view_and_object():
    from align4d_core.metrics import pooled_fvd

    g = torch.Generator().manual_seed(3)
    results = []
    for _ in range(3):
        pred = {f"eval_{k}": torch.randn(400, generator=g).tolist() for k in range(4)}
        true = {f"eval_{k}": (torch.randn(400, generator=g) + 0.5).tolist() for k in range(4)}
        results.append({"i3d": {"pred": pred, "gt": true}})
    a = np.array([r["i3d"]["pred"][v] for r in results for v in sorted(r["i3d"]["pred"])])
    b = np.array([r["i3d"]["gt"][v] for r in results for v in sorted(r["i3d"]["gt"])])
    assert a.shape == (12, 400)
    assert pooled_fvd(results) == pytest.approx(scipy_frechet(a, b), rel=1e-6)
    assert pooled_fvd(results + [{"fvd": 1.0}]) is None  # one result without logits: no pooled figure
