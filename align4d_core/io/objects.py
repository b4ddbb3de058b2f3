"""The one reader for a quadruplet's ``object`` field: whatever 3D file it names, Gaussians come out.

DESIGN.md §3 allows a 3DGS ``.ply`` or a mesh (``.glb``/``.gltf``/``.obj``/``.ply``). A ``.ply`` is
either, so its header decides: with the 3DGS properties it is read as Gaussians, otherwise as a mesh.
"""

from __future__ import annotations

import posixpath

from align4d_core.errors import InputError
from align4d_core.io.mesh import DEFAULT_N, MESH_EXTENSIONS, gaussians_from_mesh
from align4d_core.io.ply import header_vertex_properties, missing_gaussian_properties, read_gaussians_ply
from align4d_core.scene.gaussians import Gaussians

__all__ = ["OBJECT_EXTENSIONS", "is_mesh", "load_object"]

OBJECT_EXTENSIONS = tuple(sorted(set(MESH_EXTENSIONS) | {".ply"}))


def load_object(uri: str, *, n_from_mesh: int = DEFAULT_N, seed: int = 0) -> Gaussians:
    """Gaussians from a 3DGS ``.ply`` (as stored) or from a mesh (``n_from_mesh`` surface samples).

    Returns the object in its file's coordinates; fitting it to the camera is the caller's job.
    Any problem with the file raises :class:`InputError` naming it and why.
    """
    uri = str(uri)
    if is_mesh(uri):
        try:
            return gaussians_from_mesh(uri, n_from_mesh, seed=seed)
        except InputError as exc:
            properties = header_vertex_properties(uri) if _extension(uri) == ".ply" else None
            if properties is None:  # not a PLY (header) at all: the mesh reader's reason stands
                raise
            missing = missing_gaussian_properties(properties)
            raise InputError(
                f"neither a 3D Gaussian Splatting PLY (lacks {', '.join(missing)}) nor a usable mesh: {exc.reason}",
                uri=uri,
            ) from None
    return read_gaussians_ply(uri)


def is_mesh(uri: str) -> bool:
    """Whether the object file is a mesh (True) or 3D Gaussians (False): the extension, then for a
    ``.ply`` whether its header has every 3DGS property. Only the header is read; a file of no 3D
    format raises :class:`InputError`. The one decision :func:`load_object` and the animated-mesh
    export share, so that both agree on what the optimiser was given."""
    ext = _extension(uri)
    if ext not in OBJECT_EXTENSIONS:
        raise InputError(
            f"unknown 3D format {ext or '(no extension)'!r}; expected a 3DGS .ply or a mesh "
            f"({', '.join(MESH_EXTENSIONS)})",
            uri=uri,
        )
    if ext != ".ply":
        return True
    properties = header_vertex_properties(uri)
    return properties is None or bool(missing_gaussian_properties(properties))


def _extension(uri: str) -> str:
    return posixpath.splitext(str(uri).rstrip("/"))[1].lower()
