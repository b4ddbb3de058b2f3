"""A 4D object whose 3D input was a mesh, exported as that mesh animated by glTF morph targets.

When the ``object`` of an item is a mesh, the optimiser sampled its Gaussians from the surface in the
file's own coordinates (:func:`align4d_core.io.objects.load_object` does not recentre) and learned a
:class:`~align4d_core.scene.deformation.DeformationField` over those coordinates. The field is a
function of canonical position and time, so it moves any point of the input surface, not only the
Gaussians: vertex ``v`` sits at ``v + field(v, frame_times(t)).d_means`` in frame ``t``. Exporting
the mesh itself animated this way gives a result that ordinary 3D tools (Blender, three.js, model
viewers) play, which a set of Gaussians is not.

The file is one binary glTF 2.0 (``.glb``) with, decided here:

* **One mesh, one primitive.** The input's parts are placed by their scene-graph transforms and
  merged (:func:`align4d_core.io.mesh.load_mesh`, the same placement the Gaussians were sampled
  with), so the exported vertices are in exactly the coordinates the field was learned in.
* **Base = the undeformed input.** ``POSITION`` holds the input's vertices as they are in the file,
  and morph target ``t`` holds the displacement of frame ``t`` from them. A viewer that ignores the
  animation (or the default ``mesh.weights``, all zero) shows the input mesh unchanged, and every
  target is exactly the field's offset, nothing mixed in from another frame.
* **One target per frame, one-hot weights.** Keyframe ``t`` sets weight ``t`` to 1 and the others to
  0, so frame ``t`` is ``base + target_t``. Only one target is active at a time, which viewers that
  limit the number of *active* morph targets (three.js without morph textures: 8) still play.
* **STEP interpolation, duration = frames / fps.** Keyframe ``t`` is at ``t / fps`` and a last
  keyframe at ``T / fps`` repeats frame ``T - 1``, so each frame is shown for exactly ``1 / fps``,
  as a video of T frames at that rate is; the animation lasts ``T / fps`` s. LINEAR would blend
  neighbouring frames (vertex-linear in-betweens, motion the field never produced) and would show
  the last frame only for an instant.
* **No normals.** The glTF spec has viewers compute flat normals when a primitive has none, which
  stay right however the mesh deforms; stored normals would need a normal target per frame too.
* **Appearance.** Vertex colours become ``COLOR_0`` (RGBA, unsigned bytes, as stored: a glTF input
  round-trips unchanged, including a glTF's ``COLOR_0`` beside a material, which trimesh keeps as a
  vertex attribute -- as it reads the files written here). Face colours become ``COLOR_0`` too, on faces split apart (3 vertices
  each) so that no colour bleeds; a single colour over all faces needs no split. A texture (glTF's
  base-colour texture or an OBJ ``map_Kd``) is kept as ``TEXCOORD_0`` plus the image, embedded as
  PNG; glTF's ``baseColorFactor``, metallic, roughness and double-sidedness are kept; an OBJ's
  ``Kd`` becomes the base colour (converted from sRGB to glTF's linear factor); a mesh without any
  colour gets the grey its Gaussians got. Other maps (normal, emissive, ...) and alpha are dropped,
  as the Gaussians ignore them too; our own materials are matte (metallic 0, roughness 1), since
  glTF's default metallic 1 would render them nearly black.

The writer is our own (NumPy and :mod:`struct`, about a hundred lines): the glTF structure is small,
and the project gains no dependency for it. Per-frame meshes (one ``.ply`` per frame through trimesh:
the input's faces with its vertex or face colours or UVs) are an option for tools that take mesh
sequences.
"""

from __future__ import annotations

import io
import json
import math
import posixpath
import struct

import numpy as np
import torch
import trimesh

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.mesh import GREY, load_mesh
from align4d_core.io.objects import is_mesh
from align4d_core.scene.deformation import DeformationField, frame_times

__all__ = [
    "ANIMATED_MESH",
    "DEFAULT_BATCH",
    "GAUSSIANS_INPUT",
    "animated_vertices",
    "mesh_input",
    "write_animated_glb",
]

ANIMATED_MESH = "object/animated.glb"
"""Where an object folder keeps the animated mesh (DESIGN.md §9)."""

DEFAULT_BATCH = 2048
"""Vertices per call of the field. With the default field config the call's working memory is about
1.5 kB per (vertex, frame) pair (HexPlane features, the 64-wide trunk and three heads, float32;
measured on CPU): 2048 vertices x 32 frames is ~100 MB, whatever the mesh's size, and a call still
covers 65k pairs, so the per-call overhead is negligible (1M vertices x 32 frames: ~1 min on one
CPU thread)."""

GAUSSIANS_INPUT = "the 3D input is 3D Gaussians, not a mesh: no animated mesh to export"
"""The reason of the :class:`InputError` for a 3DGS object (callers may turn it into a note)."""

_FLOAT, _UNSIGNED_BYTE, _UNSIGNED_INT = 5126, 5121, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TRIANGLES = 4
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942
_MATTE = {"metallicFactor": 0.0, "roughnessFactor": 1.0}


# --- which inputs are meshes ---------------------------------------------------------------------


def mesh_input(object_uri: str) -> bool:
    """Whether an item's object file is a mesh (True) or 3D Gaussians (False).

    Decided exactly as :func:`align4d_core.io.objects.load_object` decides which reader to use (the
    extension, then for a ``.ply`` whether its header has every 3DGS property), so the two always
    agree on what the optimiser was given. Only the header is read. A file that is no 3D format at
    all raises :class:`InputError`, as loading it would have.
    """
    return is_mesh(str(object_uri))


# --- the motion ----------------------------------------------------------------------------------


def animated_vertices(
    mesh: trimesh.Trimesh | np.ndarray, field: DeformationField, n_frames: int, batch: int = DEFAULT_BATCH
) -> np.ndarray:
    """Every frame's deformed vertices, ``(n_frames, V, 3)`` float32: ``v + field(v, t).d_means``.

    ``mesh`` is a Trimesh (or a ``(V, 3)`` array) in the coordinates the field was learned in.
    ``n_frames`` is normally ``field.n_frames``; another count samples the same motion at other
    times (:func:`frame_times` maps frames 0..T-1 onto [-1, 1] either way). The field runs without
    gradients on its own device, ``batch`` vertices at a time (see :data:`DEFAULT_BATCH`), so the
    memory it needs does not grow with the mesh; only the result does (12 bytes per vertex and
    frame). Positions are float32, as the field and glTF both use them.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    vertices = np.ascontiguousarray(getattr(mesh, "vertices", mesh), dtype=np.float32)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3), got {vertices.shape}")
    device = field.bounds_min.device
    times = frame_times(torch.arange(n_frames, device=device), n_frames)
    frames = np.empty((n_frames, len(vertices), 3), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(vertices), batch):
            chunk = torch.from_numpy(vertices[start : start + batch]).to(device)
            moved = chunk[None] + field(chunk, times).d_means.to(chunk.dtype)
            frames[:, start : start + len(chunk)] = moved.cpu().numpy()
    return frames


# --- the file ------------------------------------------------------------------------------------


def write_animated_glb(
    uri: str,
    mesh_uri: str,
    field: DeformationField,
    n_frames: int,
    fps: float,
    *,
    per_frame_folder: str | None = None,
) -> dict:
    """Write the mesh at ``mesh_uri`` animated by ``field`` as a binary glTF at ``uri``.

    The structure (base, targets, animation) is described in the module notes. The file is written
    atomically through :mod:`storage` (local, ``memory://``, ``s3://``). With ``per_frame_folder``,
    frame ``t`` is also written as ``<folder>/<tttt>.ply`` (the input's faces and colours, or its UVs:
    a texture image is only in the ``.glb``). A 3DGS object raises :class:`InputError` with :data:`GAUSSIANS_INPUT`
    (check beforehand with :func:`mesh_input`); a mesh that cannot be read raises the mesh reader's.

    Returns ``vertices``, ``faces``, ``frames``, ``fps``, ``duration_s`` (= frames / fps), ``bytes``
    (the size of the ``.glb``), ``appearance`` (what colour data was kept) and ``per_frame_files``.
    """
    mesh_uri = str(mesh_uri)
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0.0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if not mesh_input(mesh_uri):
        raise InputError(GAUSSIANS_INPUT, uri=mesh_uri)
    mesh = load_mesh(mesh_uri)
    surface = _Surface.of(mesh)
    frames = animated_vertices(mesh, field, n_frames)
    written = 0
    if per_frame_folder is not None:
        for t in range(n_frames):
            storage.write_bytes(storage.join(str(per_frame_folder), f"{t:04d}.ply"), _frame_ply(mesh, frames[t]))
            written += 1
    name = posixpath.splitext(posixpath.basename(mesh_uri.rstrip("/")))[0] or "mesh"
    data = _glb(name, np.asarray(mesh.vertices, dtype=np.float32), frames, surface, fps)
    storage.write_bytes(str(uri), data)
    return {
        "vertices": int(len(mesh.vertices) if surface.index is None else len(surface.index)),
        "faces": int(len(surface.faces)),
        "frames": int(n_frames),
        "fps": fps,
        "duration_s": n_frames / fps,
        "bytes": len(data),
        "appearance": surface.appearance,
        "per_frame_files": written,
    }


class _Surface:
    """The merged mesh's faces and appearance as glTF wants them.

    ``index`` maps exported vertices to the mesh's vertices when faces were split (face colours),
    else it is None and the vertices are the mesh's own, in order.
    """

    def __init__(self) -> None:
        self.faces: np.ndarray = np.zeros((0, 3), np.uint32)
        self.index: np.ndarray | None = None
        self.colors: np.ndarray | None = None  # (V, 4) uint8
        self.uv: np.ndarray | None = None  # (V, 2) float32, glTF's convention (v down)
        self.png: bytes | None = None
        self.material: dict = {"pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], **_MATTE}}
        self.appearance = "none"

    @classmethod
    def of(cls, mesh: trimesh.Trimesh) -> _Surface:
        surface = cls()
        faces = np.asarray(mesh.faces, dtype=np.int64)
        surface.faces = faces.astype(np.uint32)
        n = len(mesh.vertices)
        visual = mesh.visual
        if isinstance(visual, trimesh.visual.TextureVisuals):
            surface._material(visual, n)
        elif visual.kind == "vertex":
            surface.colors = np.ascontiguousarray(visual.vertex_colors, dtype=np.uint8)[:, :4]
            surface.appearance = "vertex colours"
        elif visual.kind == "face":
            colors = np.ascontiguousarray(visual.face_colors, dtype=np.uint8)[:, :4]
            if (colors == colors[:1]).all():  # one colour: no need to split the faces
                surface.colors = np.broadcast_to(colors[:1], (n, 4)).copy()
            else:
                surface.index = faces.reshape(-1)
                surface.faces = np.arange(3 * len(faces), dtype=np.uint32).reshape(-1, 3)
                surface.colors = np.repeat(colors, 3, axis=0)
            surface.appearance = "face colours"
        else:
            surface._factor(_srgb_to_linear(np.full(3, GREY)))
        return surface

    def _material(self, visual: trimesh.visual.TextureVisuals, n: int) -> None:
        """Texture, base colour and PBR factors from a trimesh material (see the module notes)."""
        material = visual.material
        self.colors = _attribute_colors(visual, n)
        uv = None if visual.uv is None else np.asarray(visual.uv, dtype=np.float64)
        usable_uv = uv is not None and uv.shape == (n, 2) and bool(np.isfinite(uv).all())
        if isinstance(material, trimesh.visual.material.PBRMaterial):
            image = material.baseColorTexture
            pbr: dict = {}
            if material.baseColorFactor is not None:
                pbr["baseColorFactor"] = [float(c) / 255.0 for c in np.asarray(material.baseColorFactor)[:4]]
            for key in ("metallicFactor", "roughnessFactor"):
                value = getattr(material, key)
                if value is not None:
                    pbr[key] = float(value)
            if image is None and "baseColorFactor" not in pbr:  # no colour at all: the Gaussians' grey
                pbr["baseColorFactor"] = [float(c) for c in _srgb_to_linear(np.full(3, GREY))] + [1.0]
            self.material = {"pbrMetallicRoughness": pbr}
            if getattr(material, "doubleSided", False):
                self.material["doubleSided"] = True
            self.appearance = "base colour"
        else:  # an OBJ material: the texture alone, else its Kd (as the Gaussians' colours)
            image = getattr(material, "image", None)
            if image is None or not usable_uv:
                color = getattr(material, "main_color", None)
                rgb = np.full(3, GREY) if color is None else np.asarray(color, np.float64)[:3] / 255.0
                self._factor(_srgb_to_linear(rgb))
                self.appearance = "base colour"
        if image is not None and usable_uv:
            self.uv = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)  # trimesh flips v up
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            self.png = buffer.getvalue()
            self.material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0, "texCoord": 0}
            self.appearance = "texture"
        if self.colors is not None:
            self.appearance += " and vertex colours"

    def _factor(self, linear_rgb: np.ndarray) -> None:
        factor = [float(c) for c in linear_rgb] + [1.0]
        self.material = {"pbrMetallicRoughness": {"baseColorFactor": factor, **_MATTE}}
        self.appearance = "base colour"


def _attribute_colors(visual: trimesh.visual.TextureVisuals, n: int) -> np.ndarray | None:
    """A glTF's ``COLOR_0`` beside a material (trimesh's ``vertex_attributes['color']``) as RGBA bytes."""
    colors = visual.vertex_attributes.get("color")
    if colors is None:
        return None
    colors = np.asarray(colors)
    if colors.ndim != 2 or len(colors) != n or colors.shape[1] not in (3, 4):
        return None
    if colors.dtype.kind == "f":  # float COLOR_0 in [0, 1]
        colors = np.round(np.clip(colors, 0.0, 1.0) * 255.0)
    colors = colors.astype(np.uint8)
    if colors.shape[1] == 3:
        colors = np.concatenate([colors, np.full((n, 1), 255, np.uint8)], axis=1)
    return np.ascontiguousarray(colors)


def _frame_ply(mesh: trimesh.Trimesh, vertices: np.ndarray) -> bytes:
    """One frame as a binary PLY: the input's faces and vertex or face colours (UVs, no image)."""
    visual = mesh.visual
    if visual.kind == "vertex":
        visual = trimesh.visual.ColorVisuals(vertex_colors=visual.vertex_colors)
    elif visual.kind == "face":
        visual = trimesh.visual.ColorVisuals(face_colors=visual.face_colors)
    elif isinstance(visual, trimesh.visual.TextureVisuals) and visual.uv is not None:
        visual = trimesh.visual.TextureVisuals(uv=visual.uv, material=visual.material)
    elif isinstance(visual, trimesh.visual.TextureVisuals) and _attribute_colors(visual, len(vertices)) is not None:
        visual = trimesh.visual.ColorVisuals(vertex_colors=_attribute_colors(visual, len(vertices)))
    else:
        visual = None
    return trimesh.Trimesh(vertices, mesh.faces, visual=visual, process=False).export(file_type="ply")


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


class _Binary:
    """The BIN chunk under construction: buffer views and accessors appended in order."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.length = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        """A buffer view of ``data``, started on a 4-byte boundary (glTF's alignment rule)."""
        pad = -self.length % 4
        if pad:
            self.chunks.append(b"\x00" * pad)
            self.length += pad
        view = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.chunks.append(data)
        self.length += len(data)
        self.views.append(view)
        return len(self.views) - 1

    def accessor(
        self, array: np.ndarray, kind: str, *, target: int | None = None, bounds: bool = False, **extra
    ) -> int:
        """An accessor over ``array`` (float32, uint8 or uint32); ``bounds`` adds min and max."""
        component = {np.dtype(np.float32): _FLOAT, np.dtype(np.uint8): _UNSIGNED_BYTE}.get(array.dtype, _UNSIGNED_INT)
        array = np.ascontiguousarray(array)
        accessor = {
            "bufferView": self.view(array.tobytes(), target),
            "componentType": component,
            "count": int(len(array)),
            "type": kind,
            **extra,
        }
        if bounds:
            columns = array.reshape(len(array), -1)
            accessor["min"] = [float(v) for v in columns.min(axis=0)]
            accessor["max"] = [float(v) for v in columns.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def _glb(name: str, vertices: np.ndarray, frames: np.ndarray, surface: _Surface, fps: float) -> bytes:
    """The ``.glb`` bytes: JSON chunk (space-padded) and BIN chunk (zero-padded), spec 2.0.

    ``vertices`` and ``frames`` are the mesh's own; where the faces were split, every corner takes
    its vertex's positions (``surface.index``).
    """
    n_frames = len(frames)
    corners = slice(None) if surface.index is None else surface.index
    base = vertices[corners]
    binary = _Binary()
    attributes = {"POSITION": binary.accessor(base, "VEC3", target=_ARRAY_BUFFER, bounds=True)}
    if surface.colors is not None:
        attributes["COLOR_0"] = binary.accessor(surface.colors, "VEC4", target=_ARRAY_BUFFER, normalized=True)
    if surface.uv is not None:
        attributes["TEXCOORD_0"] = binary.accessor(surface.uv, "VEC2", target=_ARRAY_BUFFER)
    indices = binary.accessor(surface.faces.reshape(-1), "SCALAR", target=_ELEMENT_ARRAY_BUFFER)
    targets = []
    for t in range(n_frames):
        offsets = (frames[t][corners] - base).astype(np.float32)
        targets.append({"POSITION": binary.accessor(offsets, "VEC3", target=_ARRAY_BUFFER, bounds=True)})

    # keyframe t at t / fps shows frame t; the extra keyframe at T / fps holds the last frame (STEP)
    times = (np.arange(n_frames + 1, dtype=np.float64) / fps).astype(np.float32)
    weights = np.eye(n_frames, dtype=np.float32)[np.minimum(np.arange(n_frames + 1), n_frames - 1)]
    time_accessor = binary.accessor(times, "SCALAR", bounds=True)
    weight_accessor = binary.accessor(weights.reshape(-1), "SCALAR")

    gltf: dict = {
        "asset": {"version": "2.0", "generator": "align4d"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [
            {
                "name": name,
                "primitives": [
                    {
                        "attributes": attributes,
                        "indices": indices,
                        "material": 0,
                        "mode": _TRIANGLES,
                        "targets": targets,
                    }
                ],
                "weights": [0.0] * n_frames,
                "extras": {"targetNames": [f"frame_{t:04d}" for t in range(n_frames)]},
            }
        ],
        "materials": [{"name": f"{name}_material", **surface.material}],
        "animations": [
            {
                "name": "deformation",
                "samplers": [{"input": time_accessor, "output": weight_accessor, "interpolation": "STEP"}],
                "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}],
            }
        ],
        "extras": {"align4d": {"frames": n_frames, "fps": fps, "base": "undeformed input mesh"}},
    }
    if surface.png is not None:
        gltf["images"] = [{"bufferView": binary.view(surface.png), "mimeType": "image/png"}]
        gltf["samplers"] = [{"wrapS": 10497, "wrapT": 10497}]  # REPEAT, as the Gaussians' lookup wraps
        gltf["textures"] = [{"source": 0, "sampler": 0}]
    body = b"".join(binary.chunks)
    body += b"\x00" * (-len(body) % 4)
    gltf["buffers"] = [{"byteLength": len(body)}]
    gltf["bufferViews"] = binary.views
    gltf["accessors"] = binary.accessors

    text = json.dumps(gltf, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(body)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<II", len(text), _JSON_CHUNK),
            text,
            struct.pack("<II", len(body), _BIN_CHUNK),
            body,
        ]
    )
