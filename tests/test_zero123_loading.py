"""Zero123 as published: both public diffusers layouts load whole, every broken variant is refused.

The fixtures (``tiny_zero123.write_port``) are written file by file from the public facts, not by
our loader's classes; a model must load with every weight from its files, or not at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from tiny_zero123 import (
    HUB_ID,
    LAYOUTS,
    SIZE,
    install_in_hub_cache,
    rename_key,
    rewrite_weights,
    truncate,
    weight_file,
    write_port,
)

from align4d_core.config import GuidanceConfig
from align4d_core.errors import InputError
from align4d_core.guidance import load_guidance
from align4d_core.io.weights import IncompleteModelError

pytestmark = pytest.mark.usefixtures("one_thread", "offline_hub")

PORTS = [("zero123-pipeline", "safetensors"), ("zero1to3", "safetensors"), ("zero1to3", "bin")]


@pytest.fixture(scope="module")
def ports(tmp_path_factory):
    """One pristine folder per (layout, format); tests copy before breaking one."""
    return {
        (layout, fmt): write_port(tmp_path_factory.mktemp(f"{layout}-{fmt}") / "model", layout, fmt=fmt)
        for layout, fmt in PORTS
    }


@pytest.fixture
def copy_of(ports, tmp_path):
    def copy(layout="zero123-pipeline", fmt="safetensors"):
        target = tmp_path / f"{layout}-{fmt}"
        shutil.copytree(ports[(layout, fmt)], target)
        return target

    return copy


def load(folder, **overrides):
    return load_guidance(GuidanceConfig(backend="zero123", model=str(folder), input_size=SIZE, **overrides), "cpu")


def file_tensors(folder, component):
    from safetensors.torch import load_file

    path = weight_file(folder, component)
    return load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)


# --- the public layouts load, every weight from the files ----------------------------------------


@pytest.mark.parametrize("layout,fmt", PORTS)
def test_each_public_layout_loads_every_weight_from_its_files(ports, layout, fmt):
    folder = ports[(layout, fmt)]
    guidance = load(folder)
    assert guidance.layout.name == layout
    for component, module in (
        ("unet", guidance.unet),
        ("vae", guidance.vae),
        ("image_encoder", guidance.image_encoder),
    ):
        stored = file_tensors(folder, component)
        state = module.state_dict()
        assert set(state) <= set(stored), f"{component}: weights not in the files"
        for key, value in state.items():  # no tensor of the model is anything but the file's
            assert torch.equal(value, stored[key]), f"{component}.{key} differs from the file"
    projection = file_tensors(folder, LAYOUTS[layout]["projection"])
    layer = LAYOUTS[layout]["projection_layer"]
    assert torch.equal(guidance.projection.linear.weight, projection[f"{layer}.weight"])
    assert torch.equal(guidance.projection.linear.bias, projection[f"{layer}.bias"])


def test_the_layout_is_read_from_the_files_not_the_folder_name(ports, tmp_path):
    """A kxic port copied into a folder named like ashawkey's loads as kxic's layout."""
    misleading = tmp_path / "ashawkey" / "zero123-xl-diffusers"
    shutil.copytree(ports[("zero1to3", "safetensors")], misleading)
    assert load(misleading).layout.name == "zero1to3"


def test_kxic_without_a_feature_extractor_uses_its_pipelines_clip_preprocessing(tmp_path):
    """feature_extractor is optional in pipeline_zero1to3.py: its own bicubic resize + CLIP normalisation."""
    from tiny_zero123 import CLIP_MEAN, CLIP_SIZE, CLIP_STD

    folder = write_port(tmp_path / "kxic", "zero1to3", feature_extractor=False)
    guidance = load(folder)
    assert guidance.feature_extractor is None
    white = torch.ones(1, SIZE, SIZE, 3)
    pixels = (
        ((1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)).view(1, 3, 1, 1).expand(1, 3, CLIP_SIZE, CLIP_SIZE)
    )
    expected = guidance.image_encoder(pixels).image_embeds
    torch.testing.assert_close(guidance._embed(white).image_embeds, expected, atol=1e-5, rtol=1e-4)


def test_a_hub_id_loads_from_the_cache_offline(ports, offline_hub):
    install_in_hub_cache(ports[("zero123-pipeline", "safetensors")], offline_hub)
    from_hub = load(HUB_ID, fixed_distance=True)
    assert from_hub.probe_azimuths == (-90.0, 0.0, 90.0)  # eq. 11
    local = load(ports[("zero123-pipeline", "safetensors")])
    for mine, theirs in zip(from_hub.unet.state_dict().values(), local.unet.state_dict().values()):
        assert torch.equal(mine, theirs)


def test_a_variant_loads_its_own_files(tmp_path):
    """bennyguo's port carries fp16 files beside fp32 ones (threestudio loads variant='fp16')."""
    folder = write_port(tmp_path / "m", variant="fp16")
    assert load(folder, variant="fp16").layout.name == "zero123-pipeline"
    with pytest.raises(IncompleteModelError, match=r"component image_encoder/ .*no weight file"):
        load(folder)  # the plain files are not there


# --- absent: say how to get it ------------------------------------------------------------------


def test_absent_hub_weights_say_how_to_provide_them():
    with pytest.raises(InputError) as caught:
        load("align4d-test/no-such-zero123")
    message = str(caught.value)
    assert type(caught.value).__name__ == "MissingWeightsError"
    assert "align4d-test/no-such-zero123" in message and "HF_HUB_OFFLINE" in message
    assert "huggingface-cli download align4d-test/no-such-zero123 --local-dir DIR" in message
    assert "guidance.model" in message


def test_a_path_that_does_not_exist_is_absent_not_a_hub_id(tmp_path):
    with pytest.raises(InputError, match="neither an existing folder nor a hub id") as caught:
        load(tmp_path / "absent")
    assert type(caught.value).__name__ == "MissingWeightsError"


# --- present but not whole: refused, naming the folder, the component and what is wrong ----------

COMPONENT_KEYS = {  # component → a key of its file (public names)
    "unet": "conv_in.weight",
    "vae": "encoder.conv_in.weight",
    "image_encoder": "vision_model.pre_layrnorm.weight",
}


def components(layout):
    return [*COMPONENT_KEYS, LAYOUTS[layout]["projection"]]


def key_of(layout, component):
    return COMPONENT_KEYS.get(component, f"{LAYOUTS[layout]['projection_layer']}.weight")


@pytest.mark.parametrize("layout", ["zero123-pipeline", "zero1to3"])
@pytest.mark.parametrize("index", range(4))
def test_no_component_loads_with_a_weight_missing(copy_of, layout, index):
    """The proof that nothing runs freshly initialised: drop any one weight of any component."""
    folder = copy_of(layout)
    component = components(layout)[index]
    key = key_of(layout, component)
    rewrite_weights(folder, component, lambda t: {k: v for k, v in t.items() if k != key})
    with pytest.raises(IncompleteModelError) as caught:
        load(folder)
    message = str(caught.value)
    assert f"component {component}/" in message and str(folder) in message and key in message
    assert "missing" in message


@pytest.mark.parametrize("layout", ["zero123-pipeline", "zero1to3"])
@pytest.mark.parametrize("index", range(4))
def test_a_renamed_key_is_refused_naming_both_names(copy_of, layout, index):
    folder = copy_of(layout)
    component = components(layout)[index]
    key = key_of(layout, component)
    rewrite_weights(folder, component, lambda t: rename_key(t, key, key.replace("weight", "kernel")))
    with pytest.raises(IncompleteModelError) as caught:
        load(folder)
    message = str(caught.value)
    assert f"component {component}/" in message and key in message and key.replace("weight", "kernel") in message


def test_our_own_old_layout_is_refused_with_the_layer_it_expected(copy_of):
    """The bug this replaces: CCProjection's ``projection.*`` keys saved under clip_camera_projection/."""
    folder = copy_of("zero123-pipeline")
    rewrite_weights(
        folder, "clip_camera_projection", lambda t: {k.replace("proj.", "projection."): v for k, v in t.items()}
    )
    with pytest.raises(IncompleteModelError, match=r"CLIPCameraProjection \(layer 'proj'\).*missing proj.weight"):
        load(folder)


def test_a_weight_of_the_wrong_shape_is_refused(copy_of):
    folder = copy_of()
    rewrite_weights(folder, "vae", lambda t: {**t, "encoder.conv_in.weight": torch.zeros(3, 3, 3, 3)})
    with pytest.raises(IncompleteModelError, match=r"component vae/ .*encoder.conv_in.weight"):
        load(folder)


def test_a_missing_component_folder_is_named(copy_of):
    folder = copy_of("zero1to3")
    shutil.rmtree(folder / "unet")
    with pytest.raises(IncompleteModelError, match=r"component unet/ in .*: the folder is missing") as caught:
        load(folder)
    assert str(folder) in str(caught.value)


def test_a_missing_weight_file_is_a_half_finished_download(copy_of):
    folder = copy_of()
    weight_file(folder, "unet").unlink()
    with pytest.raises(IncompleteModelError, match=r"component unet/ .*no weight file.*incomplete"):
        load(folder)


@pytest.mark.parametrize("component", ["unet", "image_encoder", "clip_camera_projection"])
def test_a_truncated_file_is_refused_before_anything_loads(copy_of, component):
    folder = copy_of()
    truncate(weight_file(folder, component))
    with pytest.raises(IncompleteModelError, match=rf"component {component}/ .*truncated"):
        load(folder)


def test_a_truncated_bin_file_is_refused(copy_of):
    folder = copy_of("zero1to3", "bin")
    truncate(weight_file(folder, "vae"))
    with pytest.raises(IncompleteModelError, match=r"component vae/"):
        load(folder)


def edit_json(path, **changes):
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


def test_parts_that_do_not_fit_name_the_field(copy_of):
    folder = copy_of()
    edit_json(folder / "unet" / "config.json", in_channels=9)
    with pytest.raises(IncompleteModelError, match=r"unet/config.json in_channels is 9.*latent_channels \(4\) = 8"):
        load(folder)
    folder = copy_of("zero1to3")
    edit_json(folder / "cc_projection" / "config.json", in_channel=40)
    with pytest.raises(IncompleteModelError, match=r"cc_projection/config.json gives an input of 40 \(in_channel\)"):
        load(folder)
    folder = copy_of("zero1to3", "bin")
    edit_json(folder / "cc_projection" / "config.json", out_channel=16)
    with pytest.raises(IncompleteModelError, match=r"out_channel gives an output of 16.*cross_attention_dim \(32\)"):
        load(folder)


def test_an_unknown_layout_lists_what_it_found_and_the_known_ones(copy_of):
    folder = copy_of()
    index = json.loads((folder / "model_index.json").read_text())
    index["camera_projection"] = index.pop("clip_camera_projection")
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(
        IncompleteModelError,
        match=r"not in a known Zero123 layout.*camera_projection.*"
        r"clip_camera_projection/ \(ashawkey.*cc_projection/ \(kxic",
    ):
        load(folder)


def test_a_projection_entry_of_the_wrong_class_is_refused(copy_of):
    folder = copy_of()
    edit_json(folder / "model_index.json", clip_camera_projection=["pipeline_zero1to3", "CCProjection"])
    with pytest.raises(IncompleteModelError, match=r"\['zero123', 'CLIPCameraProjection'\]"):
        load(folder)


def test_a_projection_config_without_its_fields_is_refused(copy_of):
    folder = copy_of()
    (folder / "clip_camera_projection" / "config.json").write_text(
        json.dumps({"_class_name": "CLIPCameraProjection", "in_channel": 36})
    )
    with pytest.raises(
        IncompleteModelError, match=r"lacks the integer field\(s\) embedding_dim, additional_embeddings"
    ):
        load(folder)


# --- the backend choice, the CLI ------------------------------------------------------------------


def test_auto_falls_back_only_when_the_weights_are_absent(copy_of, tmp_path, monkeypatch):
    from align4d_core.config import RunConfig
    from align4d_core.guidance import bundled
    from align4d_core.pipeline.devices import resolve_backend

    absent = RunConfig(guidance=GuidanceConfig(model=str(tmp_path / "nothing-here"), input_size=SIZE))
    prior = resolve_backend(absent, torch.device("cpu")).guidance  # first fallback: the shipped prior
    assert (prior.backend, prior.model) == ("zero123", bundled.PRIOR)
    with monkeypatch.context() as patch:  # an install without it: the weight-free anchor
        patch.setattr(bundled, "BUNDLED_ROOT", str(tmp_path / "no-bundled-models"))
        assert resolve_backend(absent, torch.device("cpu")).guidance.backend == "anchor"
    whole = RunConfig(guidance=GuidanceConfig(model=str(copy_of()), input_size=SIZE))
    assert resolve_backend(whole, torch.device("cpu")).guidance.backend == "zero123"
    broken = copy_of("zero1to3")
    truncate(weight_file(broken, "unet"))
    with pytest.raises(IncompleteModelError, match="truncated"):  # never a silent anchor run
        resolve_backend(RunConfig(guidance=GuidanceConfig(model=str(broken), input_size=SIZE)), torch.device("cpu"))


def zero123_config_file(tmp_path, folder, **extra):
    settings = {
        "guidance": {"backend": "zero123", "model": str(folder), "input_size": SIZE},
        "search": {"probe_size": SIZE},
        **extra,
    }
    path = tmp_path / "zero123.json"
    path.write_text(json.dumps(settings))
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "align4d.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_search_with_a_public_layout_gives_a_finite_probe_curve(ports, small_sample, tmp_path):
    from test_generate import inputs

    item = inputs(small_sample, "arm_swing")
    config = zero123_config_file(tmp_path, ports[("zero1to3", "safetensors")])
    result = cli(
        "search", "--video", item.video, "--object", item.object, "--masks", item.masks, "--config", str(config)
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["guidance"] == "zero123" and len(found["maod_sds"]) == 61
    assert all(isinstance(v, float) and v == v and abs(v) < float("inf") for v in found["maod_sds"])
    assert len(set(found["maod_sds"])) > 1  # the curve varies with the distance
    assert found["maod"] <= found["vaod"]


def test_cli_search_with_a_broken_model_exits_2_before_any_search(copy_of, small_sample, tmp_path):
    from test_generate import inputs

    folder = copy_of()
    truncate(weight_file(folder, "vae"))
    item = inputs(small_sample, "arm_swing")
    config = zero123_config_file(tmp_path, folder)
    result = cli(
        "search", "--video", item.video, "--object", item.object, "--masks", item.masks, "--config", str(config)
    )
    assert result.returncode == 2, result.stderr
    assert "component vae/" in result.stderr and "truncated" in result.stderr and str(folder) in result.stderr
    assert "Traceback" not in result.stderr


def test_l_mot_and_l_geo_send_finite_nonzero_gradients_into_the_gaussians_and_the_field(ports, small_sample):
    from dataclasses import replace

    from test_optimize import load_pair

    from align4d_core.config import RunConfig
    from align4d_core.method.mgja import random_views
    from align4d_core.method.optimize import _Run
    from align4d_core.scene.cameras import orbit_cameras
    from align4d_core.scene.deformation import deform
    from align4d_core.scene.render import render

    pair, d = load_pair(small_sample, "arm_swing")
    guidance = load(ports[("zero123-pipeline", "safetensors")])
    guidance.set_frames(pair.frames)
    config = replace(RunConfig(), mgja=replace(RunConfig().mgja, views=2))
    run = _Run(pair, config, guidance)
    generator = torch.Generator().manual_seed(0)
    index = torch.tensor([0, pair.frames.shape[0] - 1])
    views = random_views(index, config.mgja, generator)
    for name in ("mot", "geo"):
        deformed = deform(run.params.gaussians(), run.field, index, run.n_frames)
        per_view = deformed.map(lambda t: t.repeat_interleave(config.mgja.views, dim=0))
        rgb = render(per_view, orbit_cameras(views.elevation, views.azimuth, d, width=SIZE)).rgb
        if name == "mot":
            loss = guidance.motion_loss(rgb, views.frame_index, views.delta(), generator)
        else:
            with torch.no_grad():
                references = render(pair.gaussians, orbit_cameras(views.elevation, views.azimuth, d, width=SIZE)).rgb
            loss = guidance.geometry_loss(rgb, references, generator)
        assert bool(torch.isfinite(loss).all()) and float(loss.detach().sum()) > 0, name
        gaussian_params = list(run.params.params.values())
        field_params = [p for p in run.field.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss.sum(), gaussian_params + field_params, allow_unused=True)
        into_gaussians = [g for g in grads[: len(gaussian_params)] if g is not None]
        into_field = [g for g in grads[len(gaussian_params) :] if g is not None]
        for label, found in (("Gaussians", into_gaussians), ("deformation field", into_field)):
            assert found and all(bool(torch.isfinite(g).all()) for g in found), f"{name} → {label}"
            assert any(float(g.abs().sum()) > 0 for g in found), f"{name} gives no gradient to the {label}"
