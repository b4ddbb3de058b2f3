"""3DGS PLY files: exact round trips, the layout viewers read, and clear errors for bad files."""

from __future__ import annotations

import uuid

import numpy as np
import plyfile
import pytest
import torch

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.ply import is_gaussian_ply, read_gaussians_ply, write_gaussians_ply
from align4d_core.scene.gaussians import Gaussians

STANDARD_DEGREE_0 = [
    "x",
    "y",
    "z",
    "nx",
    "ny",
    "nz",
    "f_dc_0",
    "f_dc_1",
    "f_dc_2",
    "opacity",
    "scale_0",
    "scale_1",
    "scale_2",
    "rot_0",
    "rot_1",
    "rot_2",
    "rot_3",
]
STANDARD_DEGREE_3 = STANDARD_DEGREE_0[:9] + [f"f_rest_{i}" for i in range(45)] + STANDARD_DEGREE_0[9:]


def random_gaussians(n: int = 257, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=gen) * 3  # noqa: E731
    return Gaussians(means=r(n, 3), log_scales=r(n, 3), quats=r(n, 4), opacity_logits=r(n), sh0=r(n, 3))


def assert_bitwise_equal(a: Gaussians, b: Gaussians) -> None:
    for name, tensor in a.tensors().items():
        other = getattr(b, name)
        assert other.dtype == torch.float32, name
        assert tensor.shape == other.shape, name
        assert np.array_equal(tensor.numpy().view(np.uint32), other.numpy().view(np.uint32)), name


def memory_uri(name: str) -> str:
    return f"memory://test-ply-{uuid.uuid4().hex}/{name}"


def write_raw_ply(path, columns: dict[str, np.ndarray], extra_elements=()) -> None:
    """A PLY with exactly the given vertex properties, written by plyfile (not by align4d)."""
    n = len(next(iter(columns.values())))
    table = np.zeros(n, dtype=[(k, v.dtype.str) for k, v in columns.items()])
    for k, v in columns.items():
        table[k] = v
    elements = [plyfile.PlyElement.describe(table, "vertex"), *extra_elements]
    plyfile.PlyData(elements, text=False, byte_order="<").write(str(path))


def gaussian_columns(n: int = 10) -> dict[str, np.ndarray]:
    g = random_gaussians(n)
    values = {
        "x": g.means[:, 0],
        "y": g.means[:, 1],
        "z": g.means[:, 2],
        **{f"f_dc_{i}": g.sh0[:, i] for i in range(3)},
        "opacity": g.opacity_logits,
        **{f"scale_{i}": g.log_scales[:, i] for i in range(3)},
        **{f"rot_{i}": g.quats[:, i] for i in range(4)},
    }
    return {k: v.numpy().astype("<f4") for k, v in values.items()}


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_round_trip_is_bitwise_exact(tmp_path, sh_degree):
    gaussians = random_gaussians()
    path = str(tmp_path / "g.ply")
    write_gaussians_ply(path, gaussians, sh_degree=sh_degree)
    assert_bitwise_equal(gaussians, read_gaussians_ply(path))
    assert is_gaussian_ply(path)


def test_written_file_has_the_standard_3dgs_layout(tmp_path):
    gaussians = random_gaussians(33)
    path = tmp_path / "g.ply"
    write_gaussians_ply(str(path), gaussians)

    ply = plyfile.PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["vertex"]
    vertex = ply["vertex"]
    assert vertex.count == 33
    assert [p.name for p in vertex.properties] == STANDARD_DEGREE_3
    assert all(vertex.data.dtype[name] == np.dtype("<f4") for name in STANDARD_DEGREE_3)
    assert not ply.text and ply.byte_order == "<"
    # raw parameters, not activations: logit opacity, log-scales, wxyz quaternions as given
    assert np.array_equal(vertex["opacity"], gaussians.opacity_logits.numpy())
    assert np.array_equal(vertex["scale_2"], gaussians.log_scales[:, 2].numpy())
    assert np.array_equal(vertex["rot_0"], gaussians.quats[:, 0].numpy())
    assert np.array_equal(vertex["f_dc_1"], gaussians.sh0[:, 1].numpy())
    for zero in ["nx", "ny", "nz", "f_rest_0", "f_rest_44"]:
        assert not vertex[zero].any()
    # the SIBR viewer reads 'element vertex N' from the third line: no comments before it
    assert path.read_bytes().split(b"\n")[:3] == [b"ply", b"format binary_little_endian 1.0", b"element vertex 33"]


def test_degree_0_file_has_no_f_rest(tmp_path):
    path = tmp_path / "g.ply"
    write_gaussians_ply(str(path), random_gaussians(5), sh_degree=0)
    names = [p.name for p in plyfile.PlyData.read(str(path))["vertex"].properties]
    assert names == STANDARD_DEGREE_0


def test_round_trip_on_a_memory_uri():
    uri = memory_uri("object/canonical.ply")
    gaussians = random_gaussians(64, seed=3)
    write_gaussians_ply(uri, gaussians)
    assert storage.exists(uri)
    assert is_gaussian_ply(uri)
    assert_bitwise_equal(gaussians, read_gaussians_ply(uri))


def test_empty_gaussians_round_trip(tmp_path):
    path = str(tmp_path / "empty.ply")
    write_gaussians_ply(path, Gaussians.empty())
    assert len(read_gaussians_ply(path)) == 0


def test_reads_other_writers_property_order_and_types(tmp_path):
    columns = gaussian_columns(12)
    reordered = {k: columns[k] for k in reversed(list(columns))}
    reordered["x"] = reordered["x"].astype("<f8")  # some tools write doubles
    reordered["red"] = np.arange(12, dtype="u1")  # and extra properties
    path = tmp_path / "other.ply"
    write_raw_ply(path, reordered)
    g = read_gaussians_ply(str(path))
    assert g.means.dtype == torch.float32
    assert np.array_equal(g.means[:, 0].numpy(), columns["x"])
    assert np.array_equal(g.quats[:, 3].numpy(), columns["rot_3"])
    assert np.array_equal(g.opacity_logits.numpy(), columns["opacity"])


def test_truncated_file_is_an_input_error(tmp_path):
    path = tmp_path / "g.ply"
    write_gaussians_ply(str(path), random_gaussians(100))
    path.write_bytes(path.read_bytes()[:-123])
    with pytest.raises(InputError, match="unreadable PLY") as info:
        read_gaussians_ply(str(path))
    assert info.value.uri == str(path)


def test_text_file_named_ply_is_an_input_error(tmp_path):
    path = tmp_path / "notes.ply"
    path.write_text("these are not the Gaussians you are looking for\n")
    with pytest.raises(InputError, match="not a PLY file"):
        read_gaussians_ply(str(path))
    assert not is_gaussian_ply(str(path))


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_gaussians_ply(str(tmp_path / "absent.ply"))
    with pytest.raises(InputError, match="file not found"):
        is_gaussian_ply(str(tmp_path / "absent.ply"))


def test_mesh_ply_is_refused_with_the_missing_properties(tmp_path):
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype="<f4")
    columns = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    columns |= {c: np.array([255, 0, 0], dtype="u1") for c in ("red", "green", "blue")}
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    path = tmp_path / "mesh.ply"
    write_raw_ply(path, columns, [plyfile.PlyElement.describe(faces, "face")])

    assert not is_gaussian_ply(str(path))
    with pytest.raises(InputError, match="not a 3D Gaussian Splatting PLY") as info:
        read_gaussians_ply(str(path))
    reason = info.value.reason
    for name in ["f_dc_0", "f_dc_2", "opacity", "scale_0", "rot_3"]:
        assert name in reason
    assert "x," not in reason and "red" not in reason


def test_ply_without_vertex_element_is_an_input_error(tmp_path):
    table = np.zeros(3, dtype=[("x", "<f4")])
    path = tmp_path / "points.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(table, "point")]).write(str(path))
    with pytest.raises(InputError, match="no 'vertex' element"):
        read_gaussians_ply(str(path))


def test_nan_in_a_property_is_named(tmp_path):
    columns = gaussian_columns(10)
    columns["opacity"][[2, 7]] = np.nan
    columns["rot_1"][0] = np.inf
    path = tmp_path / "nan.ply"
    write_raw_ply(path, columns)
    with pytest.raises(InputError, match="NaN/inf") as info:
        read_gaussians_ply(str(path))
    assert "opacity (2 of 10)" in info.value.reason
    assert "rot_1 (1 of 10)" in info.value.reason
    assert "scale_0" not in info.value.reason


def test_writing_nan_is_refused_and_leaves_nothing(tmp_path):
    bad = random_gaussians(8)
    bad.log_scales[3, 1] = float("nan")
    fresh = tmp_path / "fresh.ply"
    with pytest.raises(InputError, match="log_scales"):
        write_gaussians_ply(str(fresh), bad)
    assert list(tmp_path.iterdir()) == []

    existing = tmp_path / "existing.ply"
    good = random_gaussians(8, seed=1)
    write_gaussians_ply(str(existing), good)
    with pytest.raises(InputError):
        write_gaussians_ply(str(existing), bad)
    assert_bitwise_equal(good, read_gaussians_ply(str(existing)))
    assert [p.name for p in tmp_path.iterdir()] == ["existing.ply"]


def test_batched_gaussians_are_refused(tmp_path):
    batched = random_gaussians(4).map(lambda t: t.unsqueeze(0).repeat(2, *([1] * t.dim())))
    with pytest.raises(ValueError, match="unbatched"):
        write_gaussians_ply(str(tmp_path / "b.ply"), batched)
    assert not (tmp_path / "b.ply").exists()
