"""The animated-mesh export: a mesh input, moved by the learned field, as glTF morph targets.

Every file is read back with independent readers (pygltflib for the glTF structure and buffers,
trimesh for "does a mesh library open it"); the expected positions are computed here directly
from ``field(vertices, frame_times(...))``, never through the module under test.
"""

from __future__ import annotations

import struct

import numpy as np
import pygltflib
import pytest
import torch
import trimesh
from PIL import Image

from align4d_core.config import DeformationConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.mesh import gaussians_from_mesh
from align4d_core.io.ply import write_gaussians_ply
from align4d_core.pipeline.animated_mesh import (
    GAUSSIANS_INPUT,
    animated_vertices,
    mesh_input,
    write_animated_glb,
)
from align4d_core.scene.deformation import DeformationField, frame_times

FRAMES, FPS = 5, 8.0
SMALL = DeformationConfig(feature_dim=8, spatial_resolution=8, hidden=16)
_DTYPES = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def moving_field(mesh_or_uri, n_frames: int = FRAMES, seed: int = 0) -> DeformationField:
    """A field around the mesh's Gaussians whose (zero-initialised) heads are perturbed, so it moves."""
    field = DeformationField.from_gaussians(gaussians_from_mesh(mesh_or_uri, 256, seed=0), n_frames, SMALL)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in field.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    return field


def expected_frames(field: DeformationField, vertices: np.ndarray, n_frames: int) -> np.ndarray:
    """``v + field(v, frame_times(t)).d_means`` for every frame, straight from the field."""
    v = torch.tensor(np.asarray(vertices, dtype=np.float32))
    with torch.no_grad():
        deltas = field(v, frame_times(torch.arange(n_frames), n_frames)).d_means
    return (v[None] + deltas).numpy()


def read_gltf(path) -> pygltflib.GLTF2:
    return pygltflib.GLTF2().load(str(path))


def accessor(gltf: pygltflib.GLTF2, index: int) -> np.ndarray:
    """The accessor's values, (count, components), from the GLB's binary chunk."""
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    width = _WIDTHS[acc.type]
    dtype = np.dtype(_DTYPES[acc.componentType])
    assert view.byteStride in (None, dtype.itemsize * width)  # tightly packed
    offset = view.byteOffset + (acc.byteOffset or 0)
    assert offset % dtype.itemsize == 0
    values = np.frombuffer(gltf.binary_blob(), dtype=dtype, count=acc.count * width, offset=offset)
    return values.reshape(acc.count, width)


def morphs(gltf: pygltflib.GLTF2) -> tuple[np.ndarray, list[np.ndarray]]:
    """Base POSITION and every target's POSITION displacement of the one primitive."""
    (primitive,) = gltf.meshes[0].primitives
    return accessor(gltf, primitive.attributes.POSITION), [accessor(gltf, t["POSITION"]) for t in primitive.targets]


def coloured_sphere() -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.8)
    sphere.apply_translation([0.3, -0.2, 0.5])  # off the origin: nothing may recentre it
    colors = np.random.default_rng(3).integers(0, 256, size=(len(sphere.vertices), 4), dtype=np.uint8)
    colors[:, 3] = 255
    sphere.visual = trimesh.visual.ColorVisuals(vertex_colors=colors)
    return sphere


def test_morph_targets_reproduce_the_field_frame_by_frame(tmp_path):
    sphere = coloured_sphere()
    mesh_uri = str(tmp_path / "sphere.ply")
    sphere.export(mesh_uri)
    field = moving_field(mesh_uri)
    expected = expected_frames(field, sphere.vertices, FRAMES)
    motion = expected - expected[:1]
    assert np.abs(motion).max() > 1e-2  # the frames really differ, so a wrong frame order is caught
    assert np.abs(expected - np.asarray(sphere.vertices, np.float32)[None]).max() > 1e-2

    out = str(tmp_path / "animated.glb")
    info = write_animated_glb(out, mesh_uri, field, FRAMES, FPS)

    data = (tmp_path / "animated.glb").read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data)
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert (magic, version, length, json_type) == (b"glTF", 2, len(data), 0x4E4F534A)
    assert json_length % 4 == 0 and struct.unpack_from("<I", data, 20 + json_length + 4)[0] == 0x004E4942
    assert info == {
        "vertices": len(sphere.vertices),
        "faces": len(sphere.faces),
        "frames": FRAMES,
        "fps": FPS,
        "duration_s": FRAMES / FPS,
        "bytes": len(data),
        "appearance": "vertex colours",
        "per_frame_files": 0,
    }

    gltf = read_gltf(out)
    assert len(gltf.meshes) == 1 and len(gltf.meshes[0].primitives) == 1
    base, targets = morphs(gltf)
    assert len(targets) == FRAMES
    assert gltf.meshes[0].weights == [0.0] * FRAMES
    np.testing.assert_array_equal(base, np.asarray(sphere.vertices, np.float32))  # base: the undeformed input
    for t, target in enumerate(targets):
        np.testing.assert_allclose(base + target, expected[t], rtol=0, atol=1e-5)
    (primitive,) = gltf.meshes[0].primitives
    np.testing.assert_array_equal(accessor(gltf, primitive.indices).reshape(-1, 3), sphere.faces)
    colors_in = accessor(gltf, primitive.attributes.COLOR_0)
    np.testing.assert_array_equal(colors_in, sphere.visual.vertex_colors)
    assert gltf.accessors[primitive.attributes.COLOR_0].normalized

    # glTF requires min and max on every POSITION accessor, base and targets: exact per component
    for index in [primitive.attributes.POSITION, *(t["POSITION"] for t in primitive.targets)]:
        values = accessor(gltf, index)
        assert gltf.accessors[index].min == values.min(axis=0).tolist()
        assert gltf.accessors[index].max == values.max(axis=0).tolist()

    (animation,) = gltf.animations
    (sampler,) = animation.samplers
    (channel,) = animation.channels
    assert (channel.target.node, channel.target.path, sampler.interpolation) == (0, "weights", "STEP")
    assert gltf.nodes[channel.target.node].mesh == 0
    times = accessor(gltf, sampler.input)[:, 0]
    np.testing.assert_allclose(times, np.arange(FRAMES + 1) / FPS, rtol=1e-7)
    assert max(times) == pytest.approx(FRAMES / FPS) == gltf.accessors[sampler.input].max[0]
    weights = accessor(gltf, sampler.output).reshape(FRAMES + 1, FRAMES)
    shown = [*range(FRAMES), FRAMES - 1]  # keyframe t shows frame t; the last one holds the last frame
    np.testing.assert_array_equal(weights, np.eye(FRAMES, dtype=np.float32)[shown])

    (loaded,) = trimesh.load_scene(out, process=False).geometry.values()  # a mesh library opens it: the base
    np.testing.assert_allclose(loaded.vertices, sphere.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, sphere.faces)
    # beside a material, trimesh keeps COLOR_0 as a vertex attribute rather than as vertex colours
    np.testing.assert_array_equal(loaded.visual.vertex_attributes["color"], sphere.visual.vertex_colors)

    # the export is itself a valid mesh input: fed back in, the same base, colours and motion come out
    again = str(tmp_path / "again.glb")
    assert mesh_input(out)
    assert write_animated_glb(again, out, field, FRAMES, FPS)["appearance"] == "base colour and vertex colours"
    base_again, targets_again = morphs(read_gltf(again))
    np.testing.assert_array_equal(base_again, base)
    np.testing.assert_allclose(base_again + targets_again[-1], expected[-1], rtol=0, atol=1e-5)
    (primitive_again,) = read_gltf(again).meshes[0].primitives
    np.testing.assert_array_equal(accessor(read_gltf(again), primitive_again.attributes.COLOR_0), colors_in)


def test_scene_instances_are_placed_as_the_gaussians_were_sampled(tmp_path):
    """Two nodes instance one box with different transforms; the export is the placed union."""
    box = trimesh.creation.box(extents=(0.4, 0.6, 0.8))
    box.visual = trimesh.visual.ColorVisuals(vertex_colors=np.tile([200, 40, 40, 255], (len(box.vertices), 1)))
    first = trimesh.transformations.translation_matrix([1.0, 0.0, 0.0])
    second = trimesh.transformations.rotation_matrix(np.pi / 3, [0, 0, 1], point=[0.2, 0.1, 0.0])
    second[:3, 3] += [-1.0, 0.5, 0.25]
    scene = trimesh.Scene()
    scene.add_geometry(box, geom_name="box", node_name="left", transform=first)
    scene.graph.update(frame_to="right", frame_from=scene.graph.base_frame, matrix=second, geometry="box")
    mesh_uri = str(tmp_path / "two.glb")
    scene.export(mesh_uri)
    assert len(trimesh.load_scene(mesh_uri).geometry) == 1  # one mesh, instanced twice

    field = moving_field(mesh_uri)
    out = str(tmp_path / "two_animated.glb")
    info = write_animated_glb(out, mesh_uri, field, FRAMES, FPS)
    gltf = read_gltf(out)
    base, targets = morphs(gltf)

    placed = np.concatenate([trimesh.transform_points(box.vertices, m) for m in (first, second)])
    assert info["vertices"] == len(base) == len(placed) and info["faces"] == 2 * len(box.faces)
    order = lambda a: a[np.lexsort(a.T[::-1])]
    np.testing.assert_allclose(order(base.astype(np.float64)), order(placed), atol=1e-6)
    # the Gaussians were sampled in the same coordinates: every one lies inside the exported surface's box
    means = gaussians_from_mesh(mesh_uri, 256, seed=0).means.numpy()
    assert (means >= base.min(axis=0) - 1e-5).all() and (means <= base.max(axis=0) + 1e-5).all()
    assert means[:, 0].min() < -0.5 and means[:, 0].max() > 0.5  # both instances were sampled
    expected = expected_frames(field, base, FRAMES)
    for t, target in enumerate(targets):
        np.testing.assert_allclose(base + target, expected[t], rtol=0, atol=1e-5)


def test_face_colours_split_the_faces_and_per_frame_meshes_on_memory_storage(memory_root, tmp_path):
    box = trimesh.creation.box(extents=(1.0, 0.5, 0.25))
    face_colors = np.random.default_rng(5).integers(0, 256, size=(len(box.faces), 4), dtype=np.uint8)
    face_colors[:, 3] = 255
    box.visual = trimesh.visual.ColorVisuals(face_colors=face_colors)
    mesh_uri = f"{memory_root}/in/box.ply"
    storage.write_bytes(mesh_uri, box.export(file_type="ply"))
    field = moving_field(mesh_uri)

    out = f"{memory_root}/out/box.glb"
    folder = f"{memory_root}/out/frames"
    info = write_animated_glb(out, mesh_uri, field, FRAMES, FPS, per_frame_folder=folder)
    assert info["appearance"] == "face colours" and info["per_frame_files"] == FRAMES
    local = tmp_path / "box.glb"
    local.write_bytes(storage.read_bytes(out))
    gltf = read_gltf(local)
    base, targets = morphs(gltf)
    (primitive,) = gltf.meshes[0].primitives

    corners = np.asarray(box.vertices, np.float32)[box.faces.reshape(-1)]  # every face has its own corners
    np.testing.assert_array_equal(base, corners)
    np.testing.assert_array_equal(accessor(gltf, primitive.indices)[:, 0], np.arange(len(corners)))
    np.testing.assert_array_equal(accessor(gltf, primitive.attributes.COLOR_0), np.repeat(face_colors, 3, axis=0))
    expected = expected_frames(field, box.vertices, FRAMES)
    for t, target in enumerate(targets):
        np.testing.assert_allclose(base + target, expected[t][box.faces.reshape(-1)], rtol=0, atol=1e-5)

    assert storage.listdir(folder) == [f"{t:04d}.ply" for t in range(FRAMES)]
    for t in (0, FRAMES - 1):  # per-frame meshes keep the input's topology and its face colours
        data = trimesh.util.wrap_as_stream(storage.read_bytes(f"{folder}/{t:04d}.ply"))
        frame = trimesh.load(data, file_type="ply", process=False)
        np.testing.assert_allclose(frame.vertices, expected[t], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(frame.faces, box.faces)
        np.testing.assert_array_equal(frame.visual.face_colors, face_colors)


def test_a_texture_is_kept_with_its_uvs(tmp_path):
    quad = trimesh.Trimesh(
        vertices=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], faces=[[0, 1, 2], [0, 2, 3]], process=False
    )
    pixels = np.random.default_rng(7).integers(0, 256, size=(8, 16, 3), dtype=np.uint8)
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.25]])
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(pixels), metallicFactor=0.0)
    quad.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    mesh_uri = str(tmp_path / "quad.glb")
    quad.export(mesh_uri)
    out = str(tmp_path / "quad_animated.glb")
    info = write_animated_glb(out, mesh_uri, moving_field(mesh_uri), 2, 24.0)
    assert info["appearance"] == "texture" and info["duration_s"] == pytest.approx(2 / 24.0)

    loaded = trimesh.load(out, force="mesh", process=False)
    np.testing.assert_allclose(loaded.visual.uv, uv, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(loaded.visual.material.baseColorTexture.convert("RGB")), pixels)
    gltf = read_gltf(out)
    assert gltf.materials[0].pbrMetallicRoughness.metallicFactor == 0.0
    assert gltf.images[0].mimeType == "image/png"


def test_a_gaussians_object_is_refused_clearly(tmp_path):
    sphere = coloured_sphere()
    mesh_ply = str(tmp_path / "mesh.ply")
    sphere.export(mesh_ply)
    splat = str(tmp_path / "splat.ply")
    write_gaussians_ply(splat, gaussians_from_mesh(sphere, 64, seed=1))
    glb = str(tmp_path / "mesh.glb")
    sphere.export(glb)

    assert mesh_input(mesh_ply) and mesh_input(glb) and not mesh_input(splat)
    with pytest.raises(InputError) as caught:
        write_animated_glb(str(tmp_path / "x.glb"), splat, moving_field(mesh_ply), FRAMES, FPS)
    assert caught.value.reason == GAUSSIANS_INPUT and caught.value.uri == splat
    assert not (tmp_path / "x.glb").exists()
    with pytest.raises(InputError, match="unknown 3D format"):
        mesh_input(str(tmp_path / "clip.mp4"))


def test_animated_vertices_batches_do_not_change_the_result():
    sphere = coloured_sphere()
    field = moving_field(sphere)
    whole = animated_vertices(sphere, field, FRAMES)
    assert whole.shape == (FRAMES, len(sphere.vertices), 3) and whole.dtype == np.float32
    np.testing.assert_allclose(animated_vertices(sphere, field, FRAMES, batch=7), whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(whole, expected_frames(field, sphere.vertices, FRAMES), rtol=0, atol=1e-6)
