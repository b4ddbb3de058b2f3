"""Triangle meshes as 3D Gaussians: the ``object`` of a quadruplet when it is a mesh (DESIGN.md §3).

A mesh (``.glb``, ``.gltf``, ``.obj`` with its ``.mtl`` and textures, or a mesh ``.ply``) is loaded
through :mod:`storage`, so it may live on a local disk, in ``memory://`` or on ``s3://``; its sibling
files are fetched the same way by :class:`StorageResolver`. It becomes Gaussians by area-weighted
surface sampling: each Gaussian is a flat disc lying in the surface and carrying the surface colour
at its centre, so that the Gaussians render like the mesh before any optimisation.

Constants, and why:

* :data:`DEFAULT_N` = 16384 Gaussians. A unit-radius sphere gets discs of standard deviation 0.028,
  about 6 px in a 512 px view from distance 2.5 (fovy 49.1°): fine enough to carry a texture at the
  resolution align4d renders and evaluates, few enough for the CPU renderer; the optimiser
  densifies from there.
* :data:`SPACING_SCALE` = 1.0: the disc standard deviation equals the mean sample spacing
  ``sqrt(area / n)``. For random (Poisson) centres at that spacing, a simulation of the composited
  alpha gives alpha >= 0.97 over 99% of the surface; 0.7 times the spacing leaves 19% of the
  surface below 0.9, i.e. visible holes. The surface is closed at the price of slightly soft colour.
* :data:`THICKNESS` = 0.1: the third axis is a tenth of the other two, flat enough that the discs
  read as a surface (and give sharp silhouettes edge-on), while the covariance stays well
  conditioned for rasterisers and for an optimiser that later rescales it.
* :data:`DEFAULT_OPACITY` = 0.95: nearly opaque, as a surface is, but below the sigmoid's flat
  region so that the opacity logit still receives gradient.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
from urllib.parse import unquote

import numpy as np
import torch
import trimesh
from PIL import Image

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.scene.gaussians import Gaussians, inverse_sigmoid, rgb_to_sh0

__all__ = [
    "DEFAULT_N",
    "DEFAULT_OPACITY",
    "MESH_EXTENSIONS",
    "SPACING_SCALE",
    "THICKNESS",
    "StorageResolver",
    "gaussians_from_mesh",
    "quats_z_to",
    "load_mesh",
    "load_scene",
    "sample_texture",
    "surface_colors",
]

log = logging.getLogger(__name__)

MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".ply")
DEFAULT_N = 16_384
SPACING_SCALE = 1.0
THICKNESS = 0.1
DEFAULT_OPACITY = 0.95
GREY = 0.5
"""Colour of a mesh that has no colour data at all (no texture, vertex, face or material colour).
An OBJ with UVs whose ``.mtl`` is missing is not such a mesh: trimesh gives it a placeholder
texture of its own grey (100/255), which is used as is (with the loader's warning)."""


# --- loading -----------------------------------------------------------------------------------


class StorageResolver(trimesh.resolvers.Resolver):
    """Gives trimesh the files a mesh refers to (``.mtl``, textures, ``.bin``) from its folder URI.

    trimesh's own resolver opens local paths; this one reads through :mod:`storage`, so an ``.obj``
    on S3 or in ``memory://`` finds its ``.mtl`` and texture beside it. Names that would climb out of
    the folder are not followed; like trimesh, an absolute or unreachable name falls back to its
    base name in the folder (exporters often write the author's absolute texture path). Names that
    could not be found are kept in :attr:`missing` so that the loader can warn about them.
    """

    def __init__(self, folder: str) -> None:
        self.folder = str(folder)
        self.missing: list[str] = []

    def get(self, name: str) -> bytes:
        clean = unquote(str(name)).strip().replace("\\", "/")
        for candidate in dict.fromkeys((clean, clean.lstrip("/"), posixpath.basename(clean))):
            try:
                return storage.read_bytes(_child(self.folder, candidate))
            except InputError:
                continue
        self.missing.append(str(name))
        raise FileNotFoundError(f"{name} (looked in {self.folder})")

    def keys(self):
        fs, path = storage.filesystem(self.folder)
        root = path.rstrip("/") + "/"
        try:
            found = storage.patiently(self.folder, lambda: fs.find(path))
        except FileNotFoundError:
            return []
        return [str(p)[len(root) :] for p in found if str(p).startswith(root)]

    def namespaced(self, namespace: str) -> StorageResolver:
        return StorageResolver(_child(self.folder, namespace))

    def write(self, name: str, data) -> None:
        raise NotImplementedError("StorageResolver only reads; meshes are never written through it")


def load_scene(uri: str) -> trimesh.Scene:
    """Every triangle mesh of a ``.glb``/``.gltf``/``.obj``/``.ply`` URI, as a checked trimesh Scene.

    The scene keeps each part with its own colours and its scene-graph transform, which is what
    :func:`gaussians_from_mesh` samples. A file that is missing, unreadable, has no triangles, has
    non-finite vertices or zero area raises :class:`InputError`. A referenced ``.mtl`` or texture
    that cannot be found only warns: the geometry is still usable and the colour falls back (see
    :func:`surface_colors`).
    """
    uri = str(uri)
    ext = _extension(uri)
    if ext not in MESH_EXTENSIONS:
        raise InputError(
            f"unknown mesh format {ext or '(no extension)'!r}; expected one of {', '.join(MESH_EXTENSIONS)}", uri=uri
        )
    data = storage.read_bytes(uri)
    resolver = StorageResolver(_parent(uri))
    try:
        # process=False: trimesh's clean-up would silently drop NaN vertices (and their faces)
        # that must be reported instead; sampling needs no merged or repaired mesh anyway
        scene = trimesh.load_scene(io.BytesIO(data), file_type=ext[1:], resolver=resolver, process=False)
        instances = _instances(scene)
    except Exception as exc:  # trimesh raises many types for corrupt files
        raise InputError(f"unreadable {ext} mesh ({type(exc).__name__}: {exc})", uri=uri) from None
    if resolver.missing:
        log.warning("%s: referenced files not found, colours fall back: %s", uri, ", ".join(resolver.missing))
    _check_instances(instances, uri)
    return scene


def load_mesh(uri: str) -> trimesh.Trimesh:
    """One triangle mesh from a mesh URI: the parts of its scene moved into place and concatenated.

    Errors as :func:`load_scene`. A single part keeps its colours exactly; for several parts the
    colours are merged by trimesh where it can (textures are packed into one atlas), otherwise
    dropped with a warning. :func:`gaussians_from_mesh` samples the scene's parts directly and so
    never depends on that merge.
    """
    uri = str(uri)
    instances = _instances(load_scene(uri))
    parts = [_placed(transform, mesh) for transform, mesh in instances]
    if len(parts) == 1:
        return parts[0]
    merged = trimesh.util.concatenate(parts)
    if merged.visual.kind is None and any(p.visual.kind is not None for p in parts):
        log.warning("%s: trimesh could not merge the parts' colours; the merged mesh is uncoloured", uri)
    return merged


def _instances(scene: trimesh.Scene | trimesh.Trimesh) -> list[tuple[np.ndarray, trimesh.Trimesh]]:
    """(world-from-mesh transform, mesh) for every placed triangle mesh; points and lines dropped.

    Read from the scene graph directly rather than through ``Scene.dump``, whose per-part copy
    converts face colours to vertex colours through scipy (not a dependency of align4d).
    """
    if isinstance(scene, trimesh.Trimesh):
        return [(np.eye(4), scene)]
    instances = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        mesh = scene.geometry.get(name)
        if isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 0:
            instances.append((np.asarray(transform, dtype=np.float64), mesh))
    return instances


def _placed(transform: np.ndarray, mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """``mesh`` moved by ``transform``, sharing its colour data (nothing is copied when at identity)."""
    if np.array_equal(transform, np.eye(4)):
        return mesh
    visual = mesh.visual
    if visual.kind == "face":
        visual = trimesh.visual.ColorVisuals(face_colors=visual.face_colors)
    elif visual.kind == "vertex":
        visual = trimesh.visual.ColorVisuals(vertex_colors=visual.vertex_colors)
    elif visual.kind == "texture":
        visual = trimesh.visual.TextureVisuals(uv=visual.uv, material=visual.material)
    else:
        visual = None
    return trimesh.Trimesh(_transform_points(transform, mesh.vertices), mesh.faces, visual=visual, process=False)


def _transform_points(transform: np.ndarray, points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ transform[:3, :3].T + transform[:3, 3]


def _check_instances(instances: list[tuple[np.ndarray, trimesh.Trimesh]], uri: str | None) -> None:
    if not instances:
        raise InputError("no triangles: the file holds no triangle mesh (a point cloud or an empty scene?)", uri=uri)
    vertices = np.concatenate([np.asarray(mesh.vertices, dtype=np.float64) for _, mesh in instances])
    bad = int(np.count_nonzero(~np.isfinite(vertices).all(axis=1)))
    if bad:
        raise InputError(f"mesh has NaN/inf coordinates in {bad} of {len(vertices)} vertices", uri=uri)
    if not sum(_triangles(t, m)[1].sum() for t, m in instances) > 0.0:
        raise InputError("mesh has zero surface area (all triangles are degenerate)", uri=uri)


def _triangles(transform: np.ndarray, mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-space corners (F, 3, 3), twice the areas (F,) and unit normals (F, 3) of a placed mesh."""
    corners = _transform_points(transform, mesh.vertices)[np.asarray(mesh.faces, dtype=np.int64)]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        normals = cross / double_area[:, None]  # NaN for degenerate faces, which are never picked
    return corners, double_area, normals


def _extension(uri: str) -> str:
    return posixpath.splitext(str(uri).rstrip("/"))[1].lower()


def _parent(uri: str) -> str:
    """The folder URI holding ``uri``; ``scheme://`` itself for a file at a filesystem's root."""
    scheme, sep, path = str(uri).rpartition("://")
    parent = posixpath.dirname(path.rstrip("/"))
    if sep:
        return f"{scheme}://{parent}"
    return parent or "."


def _child(folder: str, name: str) -> str:
    """``folder/name`` for a name read from a mesh file; InputError if it climbs out of ``folder``."""
    relative = storage.safe_child("root", name)[len("root/") :]
    return f"{folder}{relative}" if folder.endswith("/") else f"{folder}/{relative}"


# --- sampling ----------------------------------------------------------------------------------


def gaussians_from_mesh(
    mesh: trimesh.Trimesh | trimesh.Scene | str | os.PathLike,
    n: int = DEFAULT_N,
    *,
    seed: int,
    opacity: float = DEFAULT_OPACITY,
    spacing_scale: float = SPACING_SCALE,
    thickness: float = THICKNESS,
) -> Gaussians:
    """``n`` flat Gaussians spread uniformly over the surface of ``mesh`` (Trimesh, Scene or URI).

    Uniform over the surface, not over triangles, so that a finely tessellated part does not get
    more Gaussians than its area deserves. Each part of a scene keeps its own colour source, so no
    texture is resampled into an atlas. The same mesh and seed give bit-identical Gaussians. The
    result is float32, in the file's world coordinates (no recentring or rescaling).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"opacity must lie strictly between 0 and 1, got {opacity}")
    if not isinstance(mesh, (trimesh.Trimesh, trimesh.Scene)):
        mesh = load_scene(os.fspath(mesh))
    instances = _instances(mesh)
    _check_instances(instances, None)
    triangles = [_triangles(transform, part) for transform, part in instances]
    corners = np.concatenate([t[0] for t in triangles])
    double_area = np.concatenate([t[1] for t in triangles])
    normals = np.concatenate([t[2] for t in triangles])
    first_face = np.cumsum([0] + [len(t[1]) for t in triangles])

    rng = np.random.default_rng(seed)
    face = rng.choice(len(double_area), size=n, p=double_area / double_area.sum())
    bary = _uniform_barycentric(rng, n)
    colors = np.empty((n, 3))
    for index, (_, part) in enumerate(instances):
        picked = (face >= first_face[index]) & (face < first_face[index + 1])
        if picked.any():
            colors[picked] = surface_colors(part, face[picked] - first_face[index], bary[picked])

    sigma = spacing_scale * np.sqrt(0.5 * double_area.sum() / n)
    log_scales = np.log(np.array([sigma, sigma, sigma * thickness]))
    return Gaussians(
        means=_f32(np.einsum("ni,nij->nj", bary, corners[face])),
        log_scales=_f32(np.broadcast_to(log_scales, (n, 3))),
        quats=_f32(quats_z_to(normals[face])),
        opacity_logits=inverse_sigmoid(torch.full((n,), float(opacity), dtype=torch.float64)).float(),
        sh0=rgb_to_sh0(_f32(np.clip(colors, 0.0, 1.0))),
    ).validate(what="gaussians from mesh")


def _uniform_barycentric(rng: np.random.Generator, n: int) -> np.ndarray:
    """Barycentric weights uniform over a triangle (the square-root trick; no rejection needed)."""
    r1, r2 = rng.random(n), rng.random(n)
    root = np.sqrt(r1)
    return np.stack([1.0 - root, root * (1.0 - r2), root * r2], axis=1)


def quats_z_to(normals: np.ndarray) -> np.ndarray:
    """wxyz unit quaternions of the shortest rotation taking +z to each (unit) normal.

    The discs are round in their plane, so the twist about the normal is irrelevant; for a normal
    pointing straight down the half-turn about x is used, where the shortest arc is undefined.
    """
    # q = (1 + z.n, z x n) normalised, with z x n = (-n_y, n_x, 0)
    quats = np.stack([1.0 + normals[:, 2], -normals[:, 1], normals[:, 0], np.zeros(len(normals))], axis=1)
    norm = np.linalg.norm(quats, axis=1, keepdims=True)
    flipped = norm[:, 0] < 1e-6
    quats[flipped] = (0.0, 1.0, 0.0, 0.0)
    norm[flipped] = 1.0
    return quats / norm


def _f32(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


# --- colour ------------------------------------------------------------------------------------


def surface_colors(mesh: trimesh.Trimesh, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] at surface points given by face index and barycentric weights, shape (n, 3).

    Priority: texture (UVs interpolated, bilinear lookup), vertex colours (interpolated), face
    colours, material base colour, else :data:`GREY`. Colours are display (sRGB) values as the
    renderer composites them; the only colour-space conversion is glTF's linear ``baseColorFactor``,
    which the spec multiplies with the decoded texture in linear space. Vertex colours are used as
    stored. An OBJ texture is used alone, without its ``Kd``: exporters (Blender among them) write a
    default ``Kd`` such as 0.8 beside ``map_Kd``, and multiplying would darken every texture. Alpha
    is ignored: the opacity of a mesh Gaussian is the constant ``opacity``.
    """
    visual = mesh.visual
    faces = np.asarray(mesh.faces, dtype=np.int64)[face]
    if visual.kind == "texture":
        return _material_colors(visual, faces, bary, len(mesh.vertices))
    if visual.kind == "vertex":
        rgb = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
        return np.einsum("ni,nij->nj", bary, rgb[faces])
    if visual.kind == "face":
        return np.asarray(visual.face_colors, dtype=np.float64)[face, :3] / 255.0
    return np.full((len(face), 3), GREY)


def _material_colors(visual, faces: np.ndarray, bary: np.ndarray, n_vertices: int) -> np.ndarray:
    material = visual.material
    n = len(faces)
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        image, factor = material.baseColorTexture, material.baseColorFactor
        linear_factor = 1.0 if factor is None else np.asarray(factor, np.float64)[:3] / 255.0
        if image is None and factor is None:
            return np.full((n, 3), GREY)
    else:
        image = getattr(material, "image", None)
        linear_factor = None
    uv = None if visual.uv is None else np.asarray(visual.uv, dtype=np.float64)
    if image is not None and uv is not None and len(uv) == n_vertices:
        rgb = sample_texture(image, np.einsum("ni,nij->nj", bary, uv[faces]))
    elif linear_factor is not None:  # glTF base colour without a texture
        rgb = np.ones((n, 3))
    else:
        return np.broadcast_to(_main_color(material), (n, 3)).copy()
    if linear_factor is None:  # OBJ: the texture alone (see surface_colors)
        return rgb
    return _linear_to_srgb(_srgb_to_linear(rgb) * linear_factor)


def _main_color(material) -> np.ndarray:
    """An untextured material's colour (OBJ ``Kd``), or grey when it has none."""
    color = getattr(material, "main_color", None)
    if color is None:
        return np.full(3, GREY)
    return np.asarray(color, dtype=np.float64)[:3] / 255.0


def sample_texture(image: Image.Image, uv: np.ndarray) -> np.ndarray:
    """Bilinear RGB lookup at UVs in trimesh's convention (origin at the image's bottom-left).

    trimesh already flips glTF's top-left UVs on load, so OBJ and glTF both arrive here with v up.
    Texel centres sit at half-integers (the OpenGL convention). UVs outside [0, 1] wrap (tiling
    textures), but the filter clamps at the image border instead of wrapping, so that a UV on an
    atlas edge does not bleed in colour from the opposite side of the image.
    """
    texels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    height, width = texels.shape[:2]
    outside = (uv < 0.0) | (uv > 1.0)
    uv = np.where(outside, np.mod(uv, 1.0), uv)
    x = uv[:, 0] * width - 0.5
    y = (1.0 - uv[:, 1]) * height - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0i, x1i = np.clip(x0, 0, width - 1).astype(np.int64), np.clip(x0 + 1, 0, width - 1).astype(np.int64)
    y0i, y1i = np.clip(y0, 0, height - 1).astype(np.int64), np.clip(y0 + 1, 0, height - 1).astype(np.int64)

    def at(yi: np.ndarray, xi: np.ndarray) -> np.ndarray:
        return texels[yi, xi].astype(np.float64) / 255.0

    top = at(y0i, x0i) * (1.0 - fx) + at(y0i, x1i) * fx
    bottom = at(y1i, x0i) * (1.0 - fx) + at(y1i, x1i) * fx
    return top * (1.0 - fy) + bottom * fy


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055)
