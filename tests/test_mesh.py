"""Meshes as Gaussians: real files in every supported format, sampled and checked geometrically."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch
import trimesh
from PIL import Image

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.mesh import GREY, THICKNESS, gaussians_from_mesh, load_mesh
from align4d_core.io.objects import load_object
from align4d_core.io.ply import read_gaussians_ply, write_gaussians_ply

RED, BLUE, GREEN, WHITE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 1.0, 1.0)


# --- helpers -----------------------------------------------------------------------------------


def distance_to_surface(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """Per point, the distance to the nearest triangle whose interior it projects into."""
    tri = np.asarray(mesh.triangles, dtype=np.float64)
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    normal = np.cross(e1, e2)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    rel = points[:, None, :] - v0[None]
    height = (rel * normal).sum(-1)
    proj = rel - height[..., None] * normal
    d00, d01, d11 = (e1 * e1).sum(-1), (e1 * e2).sum(-1), (e2 * e2).sum(-1)
    d20, d21 = (proj * e1).sum(-1), (proj * e2).sum(-1)
    denom = d00 * d11 - d01 * d01
    v = (d11 * d20 - d01 * d21) / denom
    w = (d00 * d21 - d01 * d20) / denom
    inside = (v >= -1e-6) & (w >= -1e-6) & (v + w <= 1 + 1e-6)
    return np.where(inside, np.abs(height), np.inf).min(axis=1)


def disc_normals(quats: torch.Tensor) -> np.ndarray:
    """The local z axis of each Gaussian in world space (third column of its rotation)."""
    w, x, y, z = torch.nn.functional.normalize(quats.double(), dim=-1).unbind(-1)
    return torch.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], -1).numpy()


def coloured_icosphere() -> trimesh.Trimesh:
    """Vertex colour = (position + 1) / 2, so the true colour at any surface point is known."""
    mesh = trimesh.creation.icosphere(subdivisions=2)
    rgb = np.round((mesh.vertices + 1) / 2 * 255).astype(np.uint8)
    mesh.visual.vertex_colors = np.c_[rgb, np.full(len(rgb), 255, np.uint8)]
    return mesh


def quadrant_texture(path: Path) -> None:
    """Image top: red | blue; image bottom: green | white (64 x 64)."""
    texels = np.zeros((64, 64, 3), np.uint8)
    texels[:32, :32], texels[:32, 32:] = (255, 0, 0), (0, 0, 255)
    texels[32:, :32], texels[32:, 32:] = (0, 255, 0), (255, 255, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(texels).save(path)


def write_textured_obj(folder: Path, map_kd: str | None = "textures/tex.png", kd: str = "0.8 0.8 0.8") -> Path:
    """The unit quad in z=0 with OBJ UVs (origin bottom-left of the image): uv = (x, y)."""
    folder.mkdir(parents=True, exist_ok=True)
    if map_kd == "textures/tex.png":
        quadrant_texture(folder / "textures" / "tex.png")
    (folder / "quad.mtl").write_text(f"newmtl tex\nKd {kd}\n" + (f"map_Kd {map_kd}\n" if map_kd else ""))
    (folder / "quad.obj").write_text(
        "mtllib quad.mtl\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
        "usemtl tex\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"
    )
    return folder / "quad.obj"


def write_quad_gltf(folder: Path, *, textured: bool, base_color=(1.0, 1.0, 1.0, 1.0)) -> Path:
    """The same quad as a hand-written .gltf + .bin (+ .png): glTF UVs start top-left: uv = (x, 1 - y)."""
    folder.mkdir(parents=True, exist_ok=True)
    xy = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    positions = np.c_[xy, np.zeros(4, np.float32)].astype("<f4")
    uvs = np.c_[xy[:, 0], 1 - xy[:, 1]].astype("<f4")
    indices = np.array([0, 1, 2, 0, 2, 3], "<u4")
    blob = positions.tobytes() + uvs.tobytes() + indices.tobytes()
    (folder / "quad.bin").write_bytes(blob)
    material = {"pbrMetallicRoughness": {"baseColorFactor": list(base_color)}}
    gltf = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}],
        "materials": [material],
        "buffers": [{"uri": "quad.bin", "byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 48},
            {"buffer": 0, "byteOffset": 48, "byteLength": 32},
            {"buffer": 0, "byteOffset": 80, "byteLength": 24},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5126, "count": 4, "type": "VEC2"},
            {"bufferView": 2, "componentType": 5125, "count": 6, "type": "SCALAR"},
        ],
    }
    if textured:
        quadrant_texture(folder / "tex.png")
        material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0}
        gltf |= {"textures": [{"source": 0}], "images": [{"uri": "tex.png"}]}
    (folder / "quad.gltf").write_text(json.dumps(gltf))
    return folder / "quad.gltf"


def assert_quadrant_colours(g) -> None:
    """Colours of a textured unit quad land in the quadrant the texture puts them in."""
    x, y = g.means[:, 0].numpy(), g.means[:, 1].numpy()
    colors = g.colors.numpy()
    regions = {
        "top-left": ((x < 0.4) & (y > 0.6), RED),
        "top-right": ((x > 0.6) & (y > 0.6), BLUE),
        "bottom-left": ((x < 0.4) & (y < 0.4), GREEN),
        "bottom-right": ((x > 0.6) & (y < 0.4), WHITE),
    }
    for name, (mask, expected) in regions.items():
        assert mask.sum() > 50, name
        np.testing.assert_allclose(colors[mask], np.broadcast_to(expected, colors[mask].shape), atol=1e-5, err_msg=name)


def copy_folder_to(folder: Path, uri_root: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            storage.write_bytes(storage.join(uri_root, path.relative_to(folder).as_posix()), path.read_bytes())


# --- geometry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".glb", ".ply"])
def test_vertex_coloured_sphere_samples_lie_on_the_surface(tmp_path, ext):
    mesh = coloured_icosphere()
    path = tmp_path / f"sphere{ext}"
    mesh.export(str(path))
    g = load_object(str(path), n_from_mesh=2000, seed=0)

    assert len(g) == 2000 and g.means.dtype == torch.float32 and not g.batched
    points = g.means.double().numpy()
    assert distance_to_surface(points, mesh).max() < 1e-5
    # vertex colours are linear in position, so barycentric interpolation gives (p + 1) / 2 exactly
    np.testing.assert_allclose(g.colors.numpy(), (points + 1) / 2, atol=2 / 255)
    # discs lie in the surface: their normal is the (outward) face normal, close to the radius
    radial = points / np.linalg.norm(points, axis=1, keepdims=True)
    assert (disc_normals(g.quats) * radial).sum(1).min() > 0.95
    # flat discs sized by the mean spacing sqrt(area / n)
    sigma = np.sqrt(mesh.area / 2000)
    np.testing.assert_allclose(
        g.scales.numpy(), np.broadcast_to([sigma, sigma, sigma * THICKNESS], (2000, 3)), rtol=1e-5
    )
    assert torch.allclose(g.opacities, torch.full((2000,), 0.95))


def test_samples_are_area_weighted():
    small = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)  # area 1, at z = 0
    big = small * np.sqrt(3) + [0, 0, 5]  # area 3, at z = 5
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    mesh = trimesh.Trimesh(np.vstack([small, big]), faces, process=False)
    g = gaussians_from_mesh(mesh, 20_000, seed=1)
    on_big = float((g.means[:, 2] > 2.5).float().mean())
    assert abs(on_big - 0.75) < 0.015


def test_sampling_is_deterministic_for_a_seed():
    mesh = coloured_icosphere()
    a, b = gaussians_from_mesh(mesh, 500, seed=7), gaussians_from_mesh(mesh, 500, seed=7)
    for name, tensor in a.tensors().items():
        assert torch.equal(tensor, getattr(b, name)), name
    assert not torch.equal(a.means, gaussians_from_mesh(mesh, 500, seed=8).means)


def test_downward_normals_get_a_valid_rotation():
    mesh = trimesh.Trimesh([[0, 0, 0], [0, 1, 0], [1, 0, 0]], [[0, 1, 2]], process=False)  # normal -z
    g = gaussians_from_mesh(mesh, 10, seed=0)
    np.testing.assert_allclose(disc_normals(g.quats), np.broadcast_to([0, 0, -1], (10, 3)), atol=1e-6)


def test_scene_transforms_are_applied_and_parts_concatenated(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(), transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    scene.add_geometry(trimesh.creation.box(), transform=trimesh.transformations.translation_matrix([-5, 0, 0]))
    path = tmp_path / "two.glb"
    scene.export(str(path))
    mesh = load_mesh(str(path))
    assert len(mesh.faces) == 24
    np.testing.assert_allclose(mesh.bounds, [[-5.5, -0.5, -0.5], [5.5, 0.5, 0.5]], atol=1e-6)


def test_scene_parts_keep_their_own_colours(tmp_path, caplog):
    quad = trimesh.load_mesh(str(write_textured_obj(tmp_path / "obj", kd="1 1 1")), process=False)
    sphere = coloured_icosphere()
    scene = trimesh.Scene()
    scene.add_geometry(quad)
    scene.add_geometry(sphere, transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    path = tmp_path / "mixed.glb"
    scene.export(str(path))

    g = load_object(str(path), n_from_mesh=8000, seed=0)
    on_quad = g.means[:, 0] < 2
    assert_quadrant_colours(g.select(on_quad))
    on_sphere = g.select(~on_quad)  # vertex colours, looked up in the sphere's own frame
    local = on_sphere.means.double().numpy() - [5, 0, 0]
    np.testing.assert_allclose(on_sphere.colors.numpy(), (local + 1) / 2, atol=2 / 255)
    # the single merged mesh is still available (its colours are trimesh's best effort)
    assert len(load_mesh(str(path)).faces) == 2 + len(sphere.faces)


# --- colour ------------------------------------------------------------------------------------


def test_obj_texture_colours_land_on_the_right_quadrant(tmp_path):
    obj = write_textured_obj(tmp_path / "obj")
    g = load_object(str(obj), n_from_mesh=3000, seed=0)
    assert distance_to_surface(g.means.double().numpy(), load_mesh(str(obj))).max() < 1e-6
    assert_quadrant_colours(g)  # also shows that Kd 0.8 does not darken the texture


def test_gltf_texture_uses_the_gltf_uv_origin(tmp_path):
    gltf = write_quad_gltf(tmp_path / "gltf", textured=True)
    assert_quadrant_colours(load_object(str(gltf), n_from_mesh=3000, seed=0))


def test_gltf_base_colour_factor_is_linear(tmp_path):
    gltf = write_quad_gltf(tmp_path / "gltf", textured=False, base_color=(0.2140, 0.2140, 0.2140, 1.0))
    colors = load_object(str(gltf), n_from_mesh=100, seed=0).colors.numpy()
    np.testing.assert_allclose(colors, 0.5, atol=0.01)  # linear 0.214 is sRGB 0.5


def test_obj_material_colour_without_texture(tmp_path):
    obj = write_textured_obj(tmp_path / "obj", map_kd=None, kd="0.2 0.4 0.6")
    colors = load_object(str(obj), n_from_mesh=100, seed=0).colors.numpy()
    np.testing.assert_allclose(colors, np.broadcast_to([0.2, 0.4, 0.6], colors.shape), atol=0.005)


def test_missing_texture_warns_and_falls_back_to_material_colour(tmp_path, caplog):
    obj = write_textured_obj(tmp_path / "obj", map_kd="lost.png", kd="0.2 0.4 0.6")
    with caplog.at_level(logging.WARNING, logger="align4d_core.io.mesh"):
        colors = load_object(str(obj), n_from_mesh=100, seed=0).colors.numpy()
    assert "lost.png" in caplog.text
    np.testing.assert_allclose(colors, np.broadcast_to([0.2, 0.4, 0.6], colors.shape), atol=0.005)


def test_face_colours_follow_the_faces(tmp_path):
    box = trimesh.creation.box()
    rgb = np.round((box.face_normals + 1) / 2 * 255).astype(np.uint8)
    box.visual.face_colors = np.c_[rgb, np.full(len(rgb), 255, np.uint8)]
    path = tmp_path / "box.ply"
    box.export(str(path))
    g = load_object(str(path), n_from_mesh=600, seed=0)
    np.testing.assert_allclose(g.colors.numpy(), (disc_normals(g.quats) + 1) / 2, atol=1 / 255 + 1e-6)


def test_uncoloured_mesh_is_grey(tmp_path):
    path = tmp_path / "plain.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    colors = load_object(str(path), n_from_mesh=50, seed=0).colors
    assert torch.allclose(colors, torch.full_like(colors, GREY), atol=1e-6)


def test_missing_mtl_warns_and_gives_a_uniform_grey(tmp_path, caplog):
    path = tmp_path / "no_mtl.obj"
    path.write_text("mtllib gone.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nusemtl x\nf 1/1 2/2 3/3\n")
    with caplog.at_level(logging.WARNING, logger="align4d_core.io.mesh"):
        colors = load_object(str(path), n_from_mesh=50, seed=0).colors
    assert "gone.mtl" in caplog.text
    assert torch.allclose(colors, colors[:1].expand_as(colors)) and torch.allclose(colors[0], colors[0, :1])
    assert 0.3 < float(colors[0, 0]) < 0.6


# --- storage -----------------------------------------------------------------------------------


def test_obj_with_mtl_and_texture_loads_from_memory(tmp_path):
    local = write_textured_obj(tmp_path / "obj")
    root = f"memory://test-mesh-{uuid.uuid4().hex}/dataset/objects/quad"
    copy_folder_to(local.parent, root)
    from_memory = load_object(storage.join(root, "quad.obj"), n_from_mesh=3000, seed=0)
    assert_quadrant_colours(from_memory)
    from_disk = load_object(str(local), n_from_mesh=3000, seed=0)
    for name, tensor in from_disk.tensors().items():
        assert torch.equal(tensor, getattr(from_memory, name)), name


def test_gltf_with_external_buffer_loads_from_memory(tmp_path):
    local = write_quad_gltf(tmp_path / "gltf", textured=True)
    root = f"memory://test-mesh-{uuid.uuid4().hex}/gltf"
    copy_folder_to(local.parent, root)
    assert_quadrant_colours(load_object(storage.join(root, "quad.gltf"), n_from_mesh=3000, seed=0))


def test_load_object_reads_a_3dgs_ply_as_stored(tmp_path):
    mesh_gaussians = gaussians_from_mesh(coloured_icosphere(), 300, seed=0)
    path = str(tmp_path / "object.ply")
    write_gaussians_ply(path, mesh_gaussians)
    loaded = load_object(path, n_from_mesh=10)
    assert len(loaded) == 300
    for name, tensor in read_gaussians_ply(path).tensors().items():
        assert torch.equal(tensor, getattr(loaded, name)), name


# --- bad input ---------------------------------------------------------------------------------


def test_missing_mesh_file(tmp_path):
    with pytest.raises(InputError, match="file not found") as info:
        load_object(str(tmp_path / "absent.glb"))
    assert info.value.uri == str(tmp_path / "absent.glb")


@pytest.mark.parametrize("name", ["garbage.glb", "garbage.gltf", "garbage.ply"])
def test_garbage_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="unreadable") as info:
        load_object(str(path))
    assert info.value.uri == str(path)


def test_obj_without_faces(tmp_path):
    path = tmp_path / "points.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(InputError, match="no triangles"):
        load_mesh(str(path))


def test_point_cloud_ply_is_neither_gaussians_nor_mesh(tmp_path):
    table = np.zeros(5, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    path = tmp_path / "cloud.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(table, "vertex")]).write(str(path))
    with pytest.raises(InputError, match="neither a 3D Gaussian Splatting PLY .*no triangles") as info:
        load_object(str(path))
    assert "f_dc_0" in info.value.reason


def test_nan_vertex(tmp_path):
    path = tmp_path / "nan.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    with pytest.raises(InputError, match="NaN/inf coordinates in 1 of 3 vertices"):
        load_object(str(path))


def test_degenerate_mesh(tmp_path):
    path = tmp_path / "flat.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    with pytest.raises(InputError, match="zero surface area"):
        load_object(str(path))


@pytest.mark.parametrize("name", ["object.stl", "object.splat", "object"])
def test_unknown_extension(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"solid x\nendsolid x\n")
    with pytest.raises(InputError, match="unknown 3D format"):
        load_object(str(path))
    with pytest.raises(InputError, match="unknown mesh format"):
        load_mesh(str(path))
