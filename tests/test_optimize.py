"""The optimiser on the small sample: it fits, alternates, densifies, resumes after a kill, and
stops cleanly on a diverging loss or bad input."""

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
import torch
from killing import sigkill_when

from align4d_core.config import MethodConfig, OptimizeConfig, RunConfig
from align4d_core.errors import InputError
from align4d_core.guidance import AnchorGuidance
from align4d_core.io import storage
from align4d_core.io.dataset import load_item
from align4d_core.io.manifest import read_manifest
from align4d_core.method import checkpoint
from align4d_core.method.optimize import OptimizationDiverged, Pair, optimize, phase_of
from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.deformation import deform
from align4d_core.scene.render import render


def small_config(steps=12, **optimize_overrides) -> RunConfig:
    opt = replace(
        OptimizeConfig(),
        steps=steps,
        frames_per_step=2,
        resolution_schedule=((1.0, 32),),
        ao_blocks=(3, 3),
        checkpoint_every=4,
        densify_interval=5,
        densify_grad_threshold=1e-4,
    )
    return RunConfig(optimize=replace(opt, **optimize_overrides))


def load_pair(root: str, item_id: str) -> tuple[Pair, float]:
    item = next(i for i in read_manifest(root) if i.id == item_id)
    loaded = load_item(root, item)
    distance = storage.read_json(storage.join(root, "items", item_id, "truth.json"))["distance"]
    return Pair(loaded.video.frames, loaded.masks, loaded.gaussians, 49.1), distance


def front_error(result, pair: Pair, distance: float) -> float:
    n = pair.frames.shape[0]
    with torch.no_grad():
        g = deform(result.gaussians, result.field, torch.arange(n), n)
        cams = orbit_cameras(0.0, 0.0, [distance] * n, width=pair.frames.shape[2], height=pair.frames.shape[1])
        return float(((render(g, cams).rgb - pair.frames) ** 2).mean())


def test_optimisation_reduces_the_front_view_error(small_sample):
    pair, d = load_pair(small_sample, "arm_swing")
    config = replace(
        small_config(steps=30, densify_interval=1000, grid_lr=0.064, deformation_lr=0.0064),
        method=MethodConfig(ao=False),
    )
    before = optimize(pair, d, d, replace(config, optimize=replace(config.optimize, steps=0)), AnchorGuidance())
    after = optimize(pair, d, d, config, AnchorGuidance())
    assert front_error(after, pair, d) < 0.7 * front_error(before, pair, d)
    assert [r["step"] for r in after.history] == list(range(1, 31))
    assert {"loss", "ksva_rgb", "ksva_mask", "geo", "phase", "gaussians"} <= set(after.history[-1])


def test_ao_alternates_blocks_motion_first_and_jo_is_joint():
    config = small_config()
    assert [phase_of(s, config) for s in range(1, 8)] == ["deformation"] * 3 + ["gaussians"] * 3 + ["deformation"]
    joint = replace(config, method=MethodConfig(ao=False))
    assert {phase_of(s, joint) for s in range(1, 8)} == {"joint"}


def test_ao_freezes_the_other_half(small_sample):
    pair, d = load_pair(small_sample, "twist_column")
    result = optimize(pair, d, d, small_config(steps=3), AnchorGuidance())  # three deformation steps
    assert torch.equal(result.gaussians.means, pair.gaussians.means)  # the Gaussians did not move
    assert any(float(p.detach().abs().sum()) > 0 for p in result.field.position.parameters())


def test_densification_adds_gaussians_and_training_continues(small_sample):
    pair, d = load_pair(small_sample, "arm_swing")
    result = optimize(pair, d, d, replace(small_config(steps=12), method=MethodConfig(ao=False)), AnchorGuidance())
    assert result.densify, "the low threshold makes densification happen"
    assert result.densify[0]["cloned"] + result.densify[0]["split"] > 0
    assert len(result.gaussians) == result.history[-1]["gaussians"] > len(pair.gaussians) - result.densify[0]["pruned"]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)


RESUME_SCRIPT = textwrap.dedent(
    """
    import sys, time, pathlib
    sys.path.insert(0, {tests!r})
    from test_optimize import load_pair, small_config
    from align4d_core.guidance import AnchorGuidance
    from align4d_core.method.optimize import optimize

    pair, d = load_pair({root!r}, "arm_swing")
    marker = pathlib.Path({marker!r})

    def progress(step, steps, record):
        if step == 9:  # the checkpoint of step 8 is written: wait here to be killed
            marker.write_text("ready")
            time.sleep(120)

    optimize(pair, d, d, small_config(), AnchorGuidance(), checkpoints={folder!r}, progress=progress)
    """
)


def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(small_sample, tmp_path):
    pair, d = load_pair(small_sample, "arm_swing")
    straight = optimize(pair, d, d, small_config(), AnchorGuidance(), checkpoints=str(tmp_path / "straight"))

    folder, marker = str(tmp_path / "killed"), tmp_path / "marker"
    script = RESUME_SCRIPT.format(tests=os.path.dirname(__file__), root=small_sample, marker=str(marker), folder=folder)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sigkill_when(proc, marker.exists, 180, "reached step 9")
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.load_latest(folder)[0] == 8

    resumed = optimize(pair, d, d, small_config(), AnchorGuidance(), checkpoints=folder)
    assert resumed.resumed_from == 8 and straight.resumed_from is None
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in straight.history], rel=1e-5)
    for name, value in straight.gaussians.tensors().items():
        torch.testing.assert_close(getattr(resumed.gaussians, name), value, rtol=1e-5, atol=1e-6)
    for key, value in straight.field.state_dict().items():
        torch.testing.assert_close(resumed.field.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_a_diverging_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(small_sample, tmp_path):
    pair, d = load_pair(small_sample, "twist_column")
    # a huge learning rate on the log-scales overflows exp(): infinite covariances, NaN renders
    config = replace(small_config(steps=10, checkpoint_every=1, scaling_lr=1e5), method=MethodConfig(ao=False))
    with pytest.raises(OptimizationDiverged, match=r"step \d+: (the loss is (nan|inf)|non-finite parameters)"):
        optimize(pair, d, d, config, AnchorGuidance(), checkpoints=str(tmp_path))
    step, tensors, _ = checkpoint.load_latest(str(tmp_path))
    assert step >= 1 and all(bool(torch.isfinite(t).all()) for k, t in tensors.items() if not k.startswith("adam"))


def test_a_checkpoint_of_another_configuration_is_refused(small_sample, tmp_path):
    pair, d = load_pair(small_sample, "twist_column")
    optimize(pair, d, d, small_config(steps=4), AnchorGuidance(), checkpoints=str(tmp_path))
    with pytest.raises(InputError, match="another configuration"):
        optimize(pair, d, d, small_config(steps=4, feature_lr=0.5), AnchorGuidance(), checkpoints=str(tmp_path))


def test_bad_pairs_are_refused_clearly(small_sample):
    pair, d = load_pair(small_sample, "twist_column")
    with pytest.raises(InputError, match="at least 2"):
        optimize(replace(pair, frames=pair.frames[:1], masks=pair.masks[:1]), d, d, small_config(), AnchorGuidance())
    with pytest.raises(InputError, match="no Gaussians"):
        optimize(
            replace(pair, gaussians=pair.gaussians.select(torch.zeros(len(pair.gaussians), dtype=torch.bool))),
            d,
            d,
            small_config(),
            AnchorGuidance(),
        )
    bad = pair.gaussians.clone()
    bad.means[3, 1] = float("nan")
    with pytest.raises(InputError, match="means has 1 NaN"):
        optimize(replace(pair, gaussians=bad), d, d, small_config(), AnchorGuidance())
    with pytest.raises(InputError, match="masks"):
        optimize(replace(pair, masks=pair.masks[:, :10]), d, d, small_config(), AnchorGuidance())


def test_a_video_of_another_size_is_resized_to_the_reference_size(small_sample):
    pair, d = load_pair(small_sample, "twist_column")
    config = replace(small_config(steps=2), mgja=replace(RunConfig().mgja, reference_size=32))
    result = optimize(pair, d, d, config, AnchorGuidance())  # 48 px video, renders at 32 px
    assert len(result.history) == 2


@pytest.fixture(scope="module")
def tiny_zero123_config(tmp_path_factory):
    from tiny_zero123 import SIZE, save_tiny_zero123

    from align4d_core.config import GuidanceConfig

    folder = tmp_path_factory.mktemp("tiny-zero123")
    save_tiny_zero123(folder)
    return GuidanceConfig(backend="zero123", model=str(folder), input_size=SIZE)


def test_sds_alone_moves_the_gaussians_and_the_deformation_field(small_sample, tiny_zero123_config):
    from align4d_core.guidance import load_guidance

    pair, d = load_pair(small_sample, "arm_swing")
    base = small_config(steps=2, densify_interval=1000)
    config = replace(
        base,
        method=MethodConfig(ao=False),
        guidance=tiny_zero123_config,
        mgja=replace(base.mgja, lambda_rgb=0.0, lambda_mask=0.0, views=2),
    )
    result = optimize(pair, d, 0.8 * d, config, load_guidance(tiny_zero123_config, "cpu"))
    assert {"mot", "geo"} <= set(result.history[-1]) and all(
        torch.isfinite(torch.tensor(r["loss"])) for r in result.history
    )
    assert not torch.equal(result.gaussians.means, pair.gaussians.means)
    planes = list(result.field.grid_parameters())
    assert all(bool(torch.isfinite(p).all()) for p in result.field.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.optimize.seed)
        from align4d_core.scene.deformation import DeformationField

        fresh = DeformationField.from_gaussians(pair.gaussians, pair.frames.shape[0], config.deformation)
    assert any(not torch.equal(p, q) for p, q in zip(planes, fresh.grid_parameters()))
