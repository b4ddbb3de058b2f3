"""The learned prior: its training data, its training (with resume after a kill) and its folder.

Tiny settings throughout (a handful of objects, 32 px, a few steps): these tests pin the behaviour,
``benchmarks/prior.py`` measures the quality of the shipped prior.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from killing import sigkill_when

from align4d_core.config import GuidanceConfig, PriorDataConfig, PriorModelConfig, PriorTrainConfig
from align4d_core.errors import InputError
from align4d_core.guidance import load_guidance
from align4d_core.io import storage
from align4d_core.method import checkpoint
from align4d_core.prior.data import read_prior_data, write_prior_data
from align4d_core.prior.objects import FAMILIES, RADIUS, draw_object
from align4d_core.prior.train import train_prior
from align4d_core.sample.objects import SAMPLE_OBJECTS

pytestmark = pytest.mark.usefixtures("one_thread", "offline_hub")

DATA = PriorDataConfig(objects=6, pairs_per_object=4, gaussians=300, size=32, shard_objects=4)
MODEL = PriorModelConfig(
    size=32,
    vae_channels=(16, 16, 16),
    unet_channels=(16, 32, 32),
    embedding=16,
    clip_hidden=16,
    clip_layers=1,
    clip_size=16,
    clip_patch=8,
)
TRAIN = PriorTrainConfig(model=MODEL, vae_steps=4, vae_batch=8, unet_steps=6, batch=8, checkpoint_every=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("prior-data") / "data")
    write_prior_data(out, DATA)
    return out


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("prior-model") / "model")
    return out, train_prior(data, out, TRAIN)


# --- the objects and the data --------------------------------------------------------------------


def test_the_families_are_not_the_samples_and_every_phase_stays_inside_the_radius():
    assert not set(FAMILIES) & {obj.id for obj in SAMPLE_OBJECTS}
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(24):
        obj = draw_object(rng, 200)
        seen.add(obj.family)
        reach = max(float(obj.at(p).means.norm(dim=-1).max()) for p in np.linspace(0, 1, 9))
        assert reach <= RADIUS + 1e-4
        assert reach > 0.9 * RADIUS  # normalised, not merely bounded
    assert len(seen) >= 5


def test_the_data_is_deterministic_and_has_what_the_manifest_says(data, tmp_path):
    manifest, arrays = read_prior_data(data)
    assert manifest["pairs"] == DATA.objects * DATA.pairs_per_object == len(arrays["delta"])
    assert [s["name"] for s in manifest["shards"]] == ["shard-00000.npz", "shard-00001.npz"]
    assert arrays["condition"].shape == (24, 32, 32, 3) and arrays["condition"].dtype == torch.uint8
    assert int(arrays["condition"][:, 0, 0].min()) == 255  # white background in the corners
    delta = arrays["delta"]
    assert float(delta[:, 2].abs().max()) <= 2 * DATA.band + 1e-6  # both distances in the band
    assert float(delta[:, 1].abs().max()) <= 180.0
    write_prior_data(str(tmp_path / "again"), DATA)
    _, again = read_prior_data(str(tmp_path / "again"))
    for key in arrays:
        assert torch.equal(arrays[key], again[key]), key


def test_the_data_writes_to_any_fsspec_uri():
    config = replace(DATA, objects=2)
    manifest = write_prior_data("memory://prior-test/data", config)
    _, arrays = read_prior_data("memory://prior-test/data")
    assert manifest["pairs"] == len(arrays["delta"]) == 8


def test_an_unwritable_data_uri_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot write here"):
        write_prior_data(str(blocker / "data"), DATA)
    with pytest.raises(InputError, match="not a prior data folder"):
        read_prior_data(str(tmp_path))


# --- training ------------------------------------------------------------------------------------


def test_the_trained_folder_is_in_the_public_layout_and_loads_through_the_zero123_loader(trained):
    out, record = trained
    index = json.loads(storage.read_text(storage.join(out, "model_index.json")))
    assert index["_class_name"] == "Zero123Pipeline"
    assert index["clip_camera_projection"] == ["zero123", "CLIPCameraProjection"]
    projection = json.loads(storage.read_text(storage.join(out, "clip_camera_projection", "config.json")))
    assert projection["embedding_dim"] == MODEL.embedding and projection["additional_embeddings"] == 4
    assert not any(name.endswith(".bin") for name in storage.listdir(storage.join(out, "unet")))
    guidance = load_guidance(GuidanceConfig(backend="zero123", model=out, input_size=MODEL.size), "cpu")
    assert guidance.layout.name == "zero123-pipeline"
    assert guidance.vae.config.scaling_factor == pytest.approx(record["scaling_factor"])
    assert record["d_prior"] == DATA.d_prior and record["input_size"] == MODEL.size
    assert record["final_loss"]["denoiser"] is not None and record["seconds"] > 0
    guidance.set_frames(torch.ones(2, 32, 32, 3))
    renders = torch.rand(2, 32, 32, 3, requires_grad=True)
    from align4d_core.guidance import ViewDelta

    loss = guidance.motion_loss(renders, torch.tensor([0, 1]), ViewDelta.zeros(2), torch.Generator().manual_seed(0))
    loss.sum().backward()
    assert bool(torch.isfinite(loss).all()) and float(renders.grad.abs().sum()) > 0


def test_an_unwritable_output_fails_before_any_work_and_writes_nothing(data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot write here"):
        train_prior(data, str(blocker / "model"), TRAIN)
    assert blocker.read_text() == "not a folder" and sorted(os.listdir(tmp_path)) == ["a-file"]


def test_other_settings_on_the_same_output_are_refused(data, trained):
    out, _ = trained
    with pytest.raises(InputError, match="other settings or data"):
        train_prior(data, out, replace(TRAIN, lr=1e-3))


RESUME_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_prior import TRAIN
from align4d_core.prior.train import train_prior
import torch
torch.set_num_threads(1)
def progress(phase, step, total, loss):
    if step == 7:
        open({marker!r}, "w").write("at 7")
        import time; time.sleep(600)
train_prior({data!r}, {out!r}, TRAIN, progress=progress)
"""


def test_a_training_killed_mid_way_resumes_and_ends_with_the_uninterrupted_weights(data, trained, tmp_path):
    straight, _ = trained
    out, marker = str(tmp_path / "killed"), tmp_path / "marker"
    script = RESUME_SCRIPT.format(tests=os.path.dirname(__file__), marker=str(marker), data=data, out=out)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sigkill_when(proc, marker.exists, 300, "reached step 7")
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.load_latest(storage.join(out, "checkpoints"))[0] == 6
    train_prior(data, out, TRAIN)
    from safetensors.torch import load_file

    for component in ("unet", "vae", "image_encoder", "clip_camera_projection"):
        (name,) = [n for n in os.listdir(os.path.join(straight, component)) if n.endswith(".safetensors")]
        mine, theirs = load_file(os.path.join(out, component, name)), load_file(os.path.join(straight, component, name))
        assert mine.keys() == theirs.keys()
        for key in mine:
            torch.testing.assert_close(mine[key], theirs[key], rtol=1e-5, atol=1e-6, msg=f"{component}.{key}")


# --- the shipped prior ---------------------------------------------------------------------------


def test_the_shipped_prior_is_whole_small_and_says_how_it_was_made():
    from align4d_core.guidance.bundled import PRIOR, bundled_info
    from align4d_core.guidance.zero123_layout import BUNDLED_ROOT, ZERO123_PIPELINE, detect_layout

    folder = os.path.join(BUNDLED_ROOT, PRIOR.split(":", 1)[1])
    files = [os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names]
    assert all(f.endswith((".json", ".safetensors")) for f in files), files
    assert not any(f.startswith("checkpoints") for f in files)
    assert sum(os.path.getsize(os.path.join(folder, f)) for f in files) <= 25 * 2**20
    assert detect_layout(folder) == ZERO123_PIPELINE
    info = bundled_info(PRIOR)
    assert info["d_prior"] == info["data"]["d_prior"] and info["input_size"] == info["train"]["model"]["size"]
    assert info["seconds"] > 0 and info["machine"]["device"] in ("cpu", "cuda")
    assert isinstance(info["data"]["seed"], int) and info["train"]["unet_steps"] > 0


def test_auto_runs_the_shipped_prior_through_the_public_layout_loader_and_names_it():
    from align4d_core.config import build_run_config
    from align4d_core.guidance.bundled import PRIOR, bundled_info, guidance_label
    from align4d_core.pipeline.devices import resolve_backend

    config = resolve_backend(build_run_config("cpu"), torch.device("cpu"))  # no Zero123 here: offline_hub
    assert config.guidance.backend == "zero123" and config.guidance.model == PRIOR
    assert config.guidance.input_size == bundled_info(PRIOR)["input_size"]
    assert guidance_label(config.guidance) == "zero123 (bundled prior v1)"
    guidance = load_guidance(config.guidance, "cpu")  # the strict loader: every part whole
    assert guidance.layout.name == "zero123-pipeline"
    size = config.guidance.input_size
    frame = torch.linspace(0.1, 1.0000001, size).view(1, 1, size, 1).expand(1, size, size, 3)
    guidance.set_frames(frame)  # float compositing's overshoot above 1 (the sample's pulsing_blob)
    renders = torch.rand(2, size, size, 3, requires_grad=True)
    from align4d_core.guidance import ViewDelta

    delta = ViewDelta(torch.tensor([0.0, 10.0]), torch.tensor([0.0, 90.0]), torch.zeros(2))
    loss = guidance.motion_loss(renders, torch.tensor([0, 0]), delta, torch.Generator().manual_seed(0))
    loss.sum().backward()
    assert bool(torch.isfinite(loss).all()) and float(renders.grad.abs().sum()) > 0


def test_the_wheel_carries_the_shipped_prior(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), root],
        check=True,
        capture_output=True,
    )
    import zipfile

    (wheel,) = tmp_path.glob("align4d-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = [n for n in names if n.startswith("align4d_core/guidance/bundled/prior-v1/")]
    for part in ("model_index.json", "prior.json", "unet/diffusion_pytorch_model.safetensors"):
        assert f"align4d_core/guidance/bundled/prior-v1/{part}" in shipped
    assert not any("checkpoints" in n for n in shipped)
