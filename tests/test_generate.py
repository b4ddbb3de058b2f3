"""One pair to one 4D object, end to end on the small sample, through the library and the CLI."""

import json
import subprocess
import sys

import pytest

from align4d_core.config import build_run_config
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.manifest import Item
from align4d_core.io.media import read_video
from align4d_core.io.ply import read_gaussians_ply
from align4d_core.pipeline.generate import generate, pair_inputs
from align4d_core.scene.deformation import load_deformation

FAST = {"optimize": {"steps": 4, "frames_per_step": 2, "resolution_schedule": [[1.0, 32]], "checkpoint_every": 2}}


def inputs(root: str, item_id: str) -> Item:
    base = storage.join(root, "items", item_id)
    return pair_inputs(
        storage.join(base, "video"),
        storage.join(base, "object.ply"),
        storage.join(base, "masks"),
        storage.join(base, "eval"),
    )


def test_generate_writes_the_whole_object_folder_and_skips_when_done(small_sample, tmp_path):
    out = str(tmp_path / "arm")
    config = build_run_config("cpu", FAST)
    done = generate(inputs(small_sample, "arm_swing"), out, config)  # eval views at the ground truth's size
    truth = storage.read_json(storage.join(small_sample, "items", "arm_swing", "truth.json"))
    assert abs(done["extra"]["vaod"] - truth["distance"]) <= 0.05
    assert done["extra"]["guidance"] == "zero123 (bundled prior v1)"  # auto, with no Zero123 here
    assert done["extra"]["maod"] <= done["extra"]["vaod"]  # left of VAOD, or VAOD itself (fallback)
    for rel in (
        "search.json",
        "object/canonical.ply",
        "object/deformation.safetensors",
        "object/frames/3.ply",
        "videos/turntable.mp4",
        "videos/front_vs_input.mp4",
        "eval/eval_3/3.png",
        "plots/search.png",
        "plots/losses.png",
        "losses.json",
        "done.json",
    ):
        assert storage.exists(storage.join(out, rel)), rel
    assert len(read_gaussians_ply(storage.join(out, "object/canonical.ply"))) == done["extra"]["gaussians"]
    assert load_deformation(storage.join(out, "object/deformation.safetensors")).n_frames == 4
    assert read_video(storage.join(out, "videos/front_vs_input.mp4")).num_frames == 4
    assert {"search", "search_vaod", "optimize", "render", "evaluate", "total"} <= set(done["timings"])
    assert done["extra"]["metrics"]["psnr"] > 10 and "lpips" in done["extra"]["metrics"]["missing"]

    again = generate(inputs(small_sample, "arm_swing"), out, config)
    assert again == done  # finished work is not redone


def test_the_no_oda_ablation_uses_the_fixed_distance(small_sample, tmp_path):
    config = build_run_config("cpu", FAST, preset="no-oda")
    done = generate(inputs(small_sample, "twist_column"), str(tmp_path / "no-oda"), config)
    assert done["extra"]["vaod"] == done["extra"]["maod"] == 1.5
    assert done["extra"]["method"]["oda"] is False


def test_a_missing_object_is_an_input_error_naming_the_field(small_sample, tmp_path):
    bad = pair_inputs(inputs(small_sample, "arm_swing").video, str(tmp_path / "nothing.ply"))
    with pytest.raises(InputError, match="object"):
        generate(bad, str(tmp_path / "out"), build_run_config("cpu", FAST))
    assert not storage.exists(str(tmp_path / "out" / "done.json"))


def align4d(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "align4d.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_search_prints_the_distances_and_writes_the_plot(small_sample, tmp_path):
    item = inputs(small_sample, "twist_column")
    plot = tmp_path / "curves.png"
    result = align4d(
        "search", "--video", item.video, "--object", item.object, "--masks", item.masks, "--plot", str(plot)
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    truth = storage.read_json(storage.join(small_sample, "items", "twist_column", "truth.json"))
    assert abs(found["vaod"] - truth["distance"]) <= 0.05 and len(found["distances"]) == 61
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_generate_with_a_config_file(small_sample, tmp_path):
    item = inputs(small_sample, "arm_swing")
    config = tmp_path / "fast.yaml"
    config.write_text(json.dumps(FAST))
    out = tmp_path / "out"
    result = align4d(
        "generate",
        "--video",
        item.video,
        "--object",
        item.object,
        "--masks",
        item.masks,
        "--out",
        str(out),
        "--config",
        str(config),
        "--eval-size",
        "32",
    )
    assert result.returncode == 0, result.stderr
    assert "VAOD" in result.stdout and (out / "done.json").exists()
    assert f"viewer: {out / 'viewer.html'}" in result.stdout and (out / "viewer.html").exists()
    # the sample's 3D input is a 3DGS PLY: no animated mesh, and the command says why
    assert "animated mesh: none (the 3D input is 3D Gaussians, not a mesh" in result.stdout


def test_cli_generate_refuses_an_unknown_setting_cleanly(small_sample, tmp_path):
    item = inputs(small_sample, "arm_swing")
    config = tmp_path / "typo.yaml"
    config.write_text("optimize:\n  stepz: 3\n")
    result = align4d(
        "generate",
        "--video",
        item.video,
        "--object",
        item.object,
        "--out",
        str(tmp_path / "o"),
        "--config",
        str(config),
    )
    assert result.returncode == 2 and "stepz" in result.stderr and "Traceback" not in result.stderr


def test_the_run_samples_meshes_as_the_sample_was_rendered():
    from align4d_core.config import RunConfig
    from align4d_core.io.mesh import DEFAULT_N

    assert RunConfig().mesh_samples == DEFAULT_N  # else the sample's mesh items would not match their videos


def test_a_mesh_input_gets_its_animated_mesh(small_sample, tmp_path):
    """The render stage moves the input mesh with the learned field: object/animated.glb, one morph
    target per frame (tests/test_animated_mesh.py checks the values; this checks the pipeline)."""
    import pygltflib
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    mesh.visual.vertex_colors = [200, 80, 40, 255]
    mesh_uri = str(tmp_path / "ball.glb")
    mesh.export(mesh_uri)
    item = inputs(small_sample, "arm_swing")
    out = str(tmp_path / "out")
    config = build_run_config("cpu", FAST)
    done = generate(pair_inputs(item.video, mesh_uri, masks=item.masks), out, config)
    artifacts = done["extra"]["artifacts"]
    assert artifacts["animated_mesh"] == storage.join(out, "object/animated.glb")
    gltf = pygltflib.GLTF2().load(artifacts["animated_mesh"])
    frames = read_video(item.video).num_frames
    assert len(gltf.meshes[0].primitives[0].targets) == frames
    assert gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION].count == len(mesh.vertices)
