"""The generated-object folder (DESIGN.md §9): every artifact, read back and checked against renders."""

import pytest
import torch

from align4d_core.config import EVAL_AZIMUTHS, DeformationConfig, ExportConfig
from align4d_core.io import storage
from align4d_core.io.media import list_frames, read_image, read_video
from align4d_core.io.ply import read_gaussians_ply
from align4d_core.io.splat import importance_order, read_splat
from align4d_core.pipeline.export import ARTIFACTS, export_object, write_eval_views, write_frame_plys
from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.deformation import DeformationField, deform, load_deformation, read_deformation_metadata
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import render

N_FRAMES = 3
DISTANCE = 2.0
FOVY = 40.0
EVAL_SIZE = 32
CONFIG = ExportConfig(turntable_frames=6, fps=4.0, ply_sh_degree=0)
FIELD_CONFIG = DeformationConfig(feature_dim=4, spatial_resolution=4, hidden=8)
EIGHT_BIT = 0.5 / 255 + 1e-4  # a PNG holds the render rounded to 8 bits


def tiny_object(moving: bool) -> tuple[Gaussians, DeformationField]:
    g = torch.Generator().manual_seed(0)
    n = 200
    canonical = Gaussians(
        means=(torch.rand(n, 3, generator=g) - 0.5) * 0.8,
        log_scales=torch.rand(n, 3, generator=g) - 3.5,
        quats=torch.randn(n, 4, generator=g),
        opacity_logits=torch.randn(n, generator=g) + 1.0,
        sh0=torch.randn(n, 3, generator=g),
    )
    torch.manual_seed(0)
    field = DeformationField.from_gaussians(canonical, N_FRAMES, FIELD_CONFIG)
    if moving:  # non-zero heads, so that every frame differs from the canonical object
        with torch.no_grad():
            for head in (field.position, field.rotation, field.scale):
                head[-1].bias.copy_(torch.randn(head[-1].bias.shape, generator=g) * 0.05)
                head[-1].weight.copy_(torch.randn(head[-1].weight.shape, generator=g) * 0.05)
    return canonical, field


def smooth_video(frames: int, height: int, width: int) -> torch.Tensor:
    """Gradients that change over time: what H.264 keeps well, unlike noise."""
    x = torch.linspace(0.0, 1.0, width)[None, None, :, None]
    y = torch.linspace(0.0, 1.0, height)[None, :, None, None]
    t = torch.arange(frames, dtype=torch.float32)[:, None, None, None] / frames
    return torch.cat(
        [x.expand(frames, height, width, 1), y.expand(frames, height, width, 1), t.expand(frames, height, width, 1)],
        dim=-1,
    )


def direct_render(gaussians: Gaussians, azimuth: float, size: int) -> torch.Tensor:
    cameras = orbit_cameras(0.0, azimuth, DISTANCE, width=size, fovy_deg=FOVY)
    with torch.no_grad():
        return render(gaussians, cameras).rgb[0].clamp(0.0, 1.0)


@pytest.fixture(params=["file", "memory"])
def out_root(request, tmp_path):
    return str(tmp_path / "object") if request.param == "file" else request.getfixturevalue("memory_root")


def test_export_writes_every_artifact_of_the_object_folder(out_root):
    canonical, field = tiny_object(moving=True)
    video = smooth_video(N_FRAMES, 24, 32)
    steps = []
    uris = export_object(
        out_root,
        canonical,
        field,
        n_frames=N_FRAMES,
        distance=DISTANCE,
        video_frames=video,
        config=CONFIG,
        eval_size=EVAL_SIZE,
        fovy_deg=FOVY,
        metadata={"item": "x"},
        progress=lambda *args: steps.append(args),
    )

    assert set(uris) == set(ARTIFACTS)
    assert all(storage.exists(uri) for uri in uris.values())
    assert [s[0] for s in steps] == [
        "canonical",
        "canonical_splat",
        "deformation",
        "frames",
        "turntable",
        "front_vs_input",
        "eval_0",
        "eval_1",
        "eval_2",
        "eval_3",
        "viewer",
    ]
    assert [s[1] for s in steps] == list(range(1, 12)) and {s[2] for s in steps} == {11}

    # the 3D files
    back = read_gaussians_ply(storage.join(out_root, "object/canonical.ply"))
    assert all(torch.equal(getattr(back, k), v) for k, v in canonical.tensors().items())
    with torch.no_grad():
        frames = deform(canonical, field, torch.arange(N_FRAMES), N_FRAMES)
    assert sorted(storage.listdir(uris["frames"])) == sorted(
        f"{t}.{suffix}" for t in range(N_FRAMES) for suffix in ("ply", "splat")
    )
    for t in range(N_FRAMES):
        frame = read_gaussians_ply(storage.join(out_root, f"object/frames/{t}.ply"))
        assert all(torch.equal(getattr(frame, k), v[t]) for k, v in frames.tensors().items()), t
        splat = read_splat(storage.join(out_root, f"object/frames/{t}.splat"))  # positions exact, reordered
        order = importance_order(frame)
        assert torch.equal(splat.means, frame.means[order])
    assert torch.equal(read_splat(uris["canonical_splat"]).means, canonical.means[importance_order(canonical)])
    assert not torch.equal(frames.means[1], canonical.means)  # the field really moves the object
    assert isinstance(load_deformation(uris["deformation"]), DeformationField)
    assert read_deformation_metadata(uris["deformation"]) == {
        "distance": DISTANCE,
        "fovy_deg": FOVY,
        "fps": CONFIG.fps,
        "item": "x",
    }
    assert b"align4d-canvas" in storage.read_bytes(uris["viewer"])  # the page (tests/test_viewer.py opens it)

    # the videos
    turntable = read_video(storage.join(out_root, "videos/turntable.mp4"))
    assert turntable.frames.shape == (CONFIG.turntable_frames, 24, 32, 3)
    orbit = orbit_cameras(CONFIG.turntable_elevation, [0.0, 240.0], DISTANCE, width=32, height=24, fovy_deg=FOVY)
    views = render(Gaussians(**{k: v[[0, 1]] for k, v in frames.tensors().items()}), orbit).rgb.clamp(0, 1)
    # view i is at azimuth 60° i and shows frame i mod 3; H.264 on 24 px splats loses ~0.02
    error = (turntable.frames[[0, 4]] - views).abs().mean()
    assert error < 0.03 and (turntable.frames[[1, 3]] - views).abs().mean() > 2 * error
    side_by_side = read_video(storage.join(out_root, "videos/front_vs_input.mp4"))
    assert side_by_side.frames.shape == (N_FRAMES, 24, 64, 3)
    assert (side_by_side.frames[:, :, :32] - video).abs().mean() < 0.02  # H.264 is lossy
    front = render(frames, orbit_cameras(0.0, 0.0, DISTANCE, width=32, height=24, fovy_deg=FOVY)).rgb
    assert (side_by_side.frames[:, :, 32:] - front.clamp(0, 1)).abs().mean() < 0.03

    # the evaluation views: Consistent4D layout, and the camera of a direct render
    assert storage.listdir(uris["eval"]) == [f"eval_{k}" for k in range(len(EVAL_AZIMUTHS))]
    for k in range(len(EVAL_AZIMUTHS)):
        assert list_frames(storage.join(uris["eval"], f"eval_{k}")) == [f"{t}.png" for t in range(N_FRAMES)]
    rgb, alpha = read_image(storage.join(out_root, "eval/eval_1/2.png"))
    assert alpha is None and rgb.shape == (EVAL_SIZE, EVAL_SIZE, 3)
    torch.testing.assert_close(rgb, direct_render(frames.map(lambda x: x[2]), 15.0, EVAL_SIZE), atol=EIGHT_BIT, rtol=0)


def test_untrained_object_evaluates_as_the_canonical_gaussians(memory_root):
    canonical, field = tiny_object(moving=False)
    folders = write_eval_views(
        memory_root, canonical, field, N_FRAMES, distance=DISTANCE, size=EVAL_SIZE, fovy_deg=FOVY
    )
    expected = direct_render(canonical, EVAL_AZIMUTHS[1], EVAL_SIZE)
    assert expected.min() < 0.9  # the object is in view: the comparison means something
    rgb, _ = read_image(storage.join(folders[1], "0.png"))
    torch.testing.assert_close(rgb, expected, atol=EIGHT_BIT, rtol=0)


def test_eval_size_comes_from_the_config_first(memory_root):
    canonical, field = tiny_object(moving=False)
    video = torch.ones(N_FRAMES, 16, 16, 3)
    config = ExportConfig(turntable_frames=2, eval_size=20, ply_sh_degree=0)
    export_object(
        memory_root,
        canonical,
        field,
        n_frames=N_FRAMES,
        distance=DISTANCE,
        video_frames=video,
        config=config,
        eval_size=EVAL_SIZE,
    )
    rgb, _ = read_image(storage.join(memory_root, "eval/eval_0/0.png"))
    assert rgb.shape == (20, 20, 3)


def test_frame_files_of_an_earlier_longer_export_are_removed(memory_root):
    canonical, field = tiny_object(moving=False)
    storage.write_bytes(storage.join(memory_root, "7.ply"), b"stale")
    storage.write_bytes(storage.join(memory_root, "7.splat"), b"stale")
    storage.write_bytes(storage.join(memory_root, "notes.txt"), b"kept")
    write_frame_plys(memory_root, canonical, field, N_FRAMES, sh_degree=0)
    frames = [f"{t}.{suffix}" for t in range(N_FRAMES) for suffix in ("ply", "splat")]
    assert sorted(storage.listdir(memory_root)) == sorted(frames + ["notes.txt"])


def test_video_with_the_wrong_frame_count_is_refused(memory_root):
    canonical, field = tiny_object(moving=False)
    with pytest.raises(ValueError, match="video_frames"):
        export_object(
            memory_root,
            canonical,
            field,
            n_frames=N_FRAMES,
            distance=DISTANCE,
            video_frames=torch.ones(N_FRAMES + 1, 16, 16, 3),
            config=CONFIG,
        )
