"""The HexPlane deformation field: identity at start, trainable, and saved without pickle."""

import json
import math

import pytest
import torch
from safetensors import safe_open

from align4d_core.config import DeformationConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.scene.deformation import (
    FILE_FORMAT,
    DeformationField,
    HexPlane,
    deform,
    frame_times,
    load_deformation,
    object_bounds,
    read_deformation_metadata,
    save_deformation,
)
from align4d_core.scene.gaussians import Gaussians

SMALL = DeformationConfig(feature_dim=8, spatial_resolution=8, hidden=32)


def random_gaussians(n: int, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.rand(n, 3, generator=g) - 0.5,
        log_scales=torch.rand(n, 3, generator=g) * 2 - 5,
        quats=torch.randn(n, 4, generator=g),
        opacity_logits=torch.randn(n, generator=g),
        sh0=torch.randn(n, 3, generator=g),
    )


def perturb_heads(field: DeformationField, seed: int = 0) -> None:
    """Give the zero-initialised last layers values, so every parameter upstream gets gradients."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in (field.position, field.rotation, field.scale):
            head[-1].weight.copy_(torch.randn(head[-1].weight.shape, generator=g) * 0.1)


# --- time ----------------------------------------------------------------------------------------


def test_frame_times_span_minus_one_to_one():
    torch.testing.assert_close(frame_times(torch.arange(5), 5), torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert frame_times(torch.tensor([0]), 1).tolist() == [0.0]
    with pytest.raises(ValueError, match="0..3"):
        frame_times(torch.tensor([4]), 4)


# --- the HexPlane ----------------------------------------------------------------------------


def test_hexplane_shape_and_initialisation():
    plane = HexPlane(feature_dim=6, spatial_resolution=5, temporal_resolution=3, plane_init=(0.1, 0.5))
    shapes = [tuple(p.shape) for p in plane.planes]
    assert shapes == [(1, 6, 5, 5)] * 3 + [(1, 6, 5, 3)] * 3
    assert all(bool(((p >= 0.1) & (p <= 0.5)).all()) for p in plane.planes[:3])
    assert all(bool((p == 1).all()) for p in plane.planes[3:])
    out = plane(torch.rand(11, 3) * 2 - 1, torch.tensor([-1.0, 0.0, 1.0, 0.25]))
    assert out.shape == (4, 11, 6)
    # time planes at 1: features are the same at every time
    torch.testing.assert_close(out, out[:1].expand_as(out))


def test_hexplane_features_are_the_product_of_the_six_samples():
    torch.manual_seed(0)
    plane = HexPlane(feature_dim=4, spatial_resolution=6, temporal_resolution=5)
    xyz, t = torch.rand(9, 3) * 2 - 1, torch.tensor([-1.0, 1.0])
    with torch.no_grad():
        plane.planes[5][:, :, :, 4] = 0.0  # the (z, t) plane is zero at the last time node
        plane.planes[0].mul_(2.0)
    out = plane(xyz, t)
    assert bool((out[0] != 0).all()) and bool((out[1] == 0).all())  # t=1 is the last node
    with torch.no_grad():
        plane.planes[0].mul_(0.5)
    torch.testing.assert_close(plane(xyz, t)[0] * 2.0, out[0])  # linear in each plane


def test_hexplane_matches_a_point_by_point_lookup():
    torch.manual_seed(1)
    plane = HexPlane(feature_dim=3, spatial_resolution=4, temporal_resolution=3)
    with torch.no_grad():
        for p in plane.planes[3:]:
            p.uniform_(0.5, 1.5)
    xyz, t = torch.rand(5, 3) * 2 - 1, torch.tensor([-0.3, 0.9])
    out = plane(xyz, t)
    pairs = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    for i in range(2):
        for j in range(5):
            coords = torch.cat([xyz[j], t[i : i + 1]])
            expected = torch.ones(3)
            for p, (a, b) in zip(plane.planes, pairs):
                expected = expected * bilinear(p[0], coords[a], coords[b])
            torch.testing.assert_close(out[i, j], expected)


def bilinear(plane: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference lookup, align_corners=True: u indexes rows (axis a), v columns (axis b)."""
    rows, cols = plane.shape[1:]
    y, x = (u + 1) / 2 * (rows - 1), (v + 1) / 2 * (cols - 1)
    y0, x0 = int(y.floor().clamp(max=rows - 2)), int(x.floor().clamp(max=cols - 2))
    fy, fx = y - y0, x - x0
    return (
        plane[:, y0, x0] * (1 - fy) * (1 - fx)
        + plane[:, y0 + 1, x0] * fy * (1 - fx)
        + plane[:, y0, x0 + 1] * (1 - fy) * fx
        + plane[:, y0 + 1, x0 + 1] * fy * fx
    )


# --- the field -------------------------------------------------------------------------------


def test_untrained_field_leaves_every_frame_equal_to_the_canonical_gaussians():
    canonical = random_gaussians(50)
    field = DeformationField.from_gaussians(canonical, 4, SMALL)
    frames = deform(canonical, field, torch.arange(4), 4)
    assert frames.means.shape == (4, 50, 3) and frames.opacity_logits.shape == (4, 50)
    for t in range(4):
        for name, tensor in canonical.tensors().items():
            assert torch.equal(getattr(frames, name)[t], tensor), name


def test_bounds_grow_the_box_and_far_points_are_clamped():
    means = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0]])  # flat in z
    bounds = object_bounds(means, 0.2)
    torch.testing.assert_close(bounds, torch.tensor([[-0.2, -0.2, -0.2], [1.2, 0.7, 0.2]]))
    field = DeformationField(SMALL, 3, bounds)
    far = torch.tensor([[5.0, -5.0, 0.0]])
    assert field.normalise(far).tolist() == [[1.0, -1.0, 0.0]]
    perturb_heads(field)
    times = frame_times(torch.arange(3), 3)
    edge = field(torch.tensor([[1.2, -0.2, 0.0]]), times)
    torch.testing.assert_close(field(far, times).d_means, edge.d_means)


def test_gradients_reach_the_field_and_the_canonical_gaussians():
    canonical = random_gaussians(40)
    canonical.means.requires_grad_(True)
    field = DeformationField.from_gaussians(canonical, 3, SMALL)
    frames = deform(canonical, field, torch.tensor([0, 2]), 3)
    (frames.means.square().sum() + frames.quats.sum() + frames.log_scales.sum()).backward()
    # at zero init only the last layers learn (their inputs are non-zero), and the means get the
    # identity path
    for head in (field.position, field.rotation, field.scale):
        assert head[-1].weight.grad.abs().sum() > 0
    assert canonical.means.grad.abs().sum() > 0

    perturb_heads(field)
    field.zero_grad()
    frames = deform(canonical, field, torch.tensor([0, 2]), 3)
    (frames.means.square().sum() + frames.quats.sum() + frames.log_scales.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.grid_parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.mlp_parameters())
    n_grid, n_mlp = len(list(field.grid_parameters())), len(list(field.mlp_parameters()))
    assert n_grid + n_mlp == len(list(field.parameters()))


@pytest.fixture
def one_thread():
    """Hundreds of tiny steps: a second intra-op thread only adds waiting on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_field_learns_a_known_motion(one_thread):
    torch.manual_seed(0)
    n_frames = 4
    canonical = random_gaussians(200)
    field = DeformationField.from_gaussians(canonical, n_frames, SMALL)
    frames = torch.arange(n_frames)
    phase = frames.float() / n_frames * 2 * math.pi
    # a frame-dependent rotation about y plus a lift: every point moves differently
    cos, sin = torch.cos(0.5 * phase)[:, None], torch.sin(0.5 * phase)[:, None]
    x, y, z = canonical.means.unbind(-1)
    target = torch.stack([cos * x + sin * z, y + 0.1 * torch.sin(phase)[:, None], -sin * x + cos * z], dim=-1)

    optimizer = torch.optim.Adam(
        [
            {"params": list(field.grid_parameters()), "lr": 0.02},
            {"params": list(field.mlp_parameters()), "lr": 0.005},
        ]
    )

    def error() -> torch.Tensor:
        return (deform(canonical, field, frames, n_frames).means - target).square().mean()

    start = float(error().detach())
    for _ in range(150):
        optimizer.zero_grad()
        loss = error()
        loss.backward()
        optimizer.step()
    assert float(error().detach()) < start / 50


# --- files -----------------------------------------------------------------------------------


def test_save_load_round_trip_is_exact_and_pickle_free(any_local_or_memory_root):
    canonical = random_gaussians(30)
    field = DeformationField.from_gaussians(canonical, 5, SMALL)
    perturb_heads(field)
    uri = storage.join(any_local_or_memory_root, "object", "deformation.safetensors")
    save_deformation(uri, field, {"distance": 1.25})

    torch.manual_seed(3)
    loaded = load_deformation(uri)
    after_load = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(after_load, torch.rand(1))  # loading does not consume the caller's random stream
    times = frame_times(torch.arange(5), 5)
    with torch.no_grad():
        a, b = field(canonical.means, times), loaded(canonical.means, times)
    for name in ("d_means", "d_quats", "d_log_scales"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert loaded.n_frames == 5 and loaded.config == SMALL
    assert torch.equal(loaded.bounds, field.bounds)
    assert read_deformation_metadata(uri) == {"distance": 1.25}

    with storage.local_copy(uri) as path, safe_open(path, framework="pt") as handle:
        header = handle.metadata()
        assert "bounds_min" in set(handle.keys())
    assert header["format"] == FILE_FORMAT and header["n_frames"] == "5"
    assert json.loads(header["config"])["feature_dim"] == SMALL.feature_dim
    torch.testing.assert_close(torch.tensor(json.loads(header["bounds"])), field.bounds)
    assert b"pickle" not in storage.read_bytes(uri) and not storage.read_bytes(uri).startswith(b"\x80")


@pytest.fixture(params=["file", "memory"])
def any_local_or_memory_root(request, tmp_path):
    return str(tmp_path) if request.param == "file" else request.getfixturevalue("memory_root")


def test_bad_files_raise_input_error(memory_root):
    field = DeformationField.from_gaussians(random_gaussians(10), 2, SMALL)
    good = storage.join(memory_root, "good.safetensors")
    save_deformation(good, field, {})
    data = storage.read_bytes(good)

    corrupt = storage.join(memory_root, "corrupt.safetensors")
    storage.write_bytes(corrupt, data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt.safetensors"):
        load_deformation(corrupt)

    garbage = storage.join(memory_root, "garbage.safetensors")
    storage.write_bytes(garbage, b"not a tensor file at all")
    with pytest.raises(InputError):
        load_deformation(garbage)

    with pytest.raises(InputError, match="not found"):
        load_deformation(storage.join(memory_root, "missing.safetensors"))


def test_a_foreign_safetensors_file_is_refused(memory_root):
    from safetensors.torch import save

    uri = storage.join(memory_root, "weights.safetensors")
    storage.write_bytes(uri, save({"w": torch.zeros(2)}))
    with pytest.raises(InputError, match="not an align4d deformation file"):
        load_deformation(uri)
