"""3D Gaussian Splatting ``.ply`` files: the format every splat viewer and trainer exchanges.

The layout is the one the original 3DGS trainer writes (DESIGN.md §4): binary little-endian, one
``vertex`` element, one float32 property per raw parameter, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  [f_rest_0 .. f_rest_44]  opacity
    scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

``opacity`` is the logit, ``scale_*`` are log-scales and ``rot_*`` a wxyz quaternion: exactly the
fields of :class:`~align4d_core.scene.gaussians.Gaussians`, so a write/read round trip is bit-exact.

Why ``sh_degree=3`` (45 zero ``f_rest_*``) is the default although align4d's Gaussians are degree 0:
SuperSplat / PlayCanvas and antimatter15/splat read the header and accept any degree, but the
original 3DGS SIBR viewer does not parse property names at all. It reads fixed-size structs whose
size follows the ``sh_degree`` in the model folder's ``cfg_args`` (3 for every trained 3DGS model,
and its loader has no degree-0 case), and it expects ``element vertex N`` on the third header line.
Padding to degree 3 therefore opens everywhere; it costs 62 instead of 17 floats per Gaussian, so a
caller writing many files that only align4d reads back (per-frame dumps, caches) may pass
``sh_degree=0``. No ``comment`` lines are written, for the same SIBR reason.
"""

from __future__ import annotations

import io

import numpy as np
import plyfile
import torch

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.scene.gaussians import Gaussians

__all__ = [
    "DEFAULT_SH_DEGREE",
    "GAUSSIAN_PROPERTIES",
    "gaussian_property_names",
    "header_vertex_properties",
    "is_gaussian_ply",
    "missing_gaussian_properties",
    "read_gaussians_ply",
    "write_gaussians_ply",
]

DEFAULT_SH_DEGREE = 3
"""Degree the written file claims (higher bands are zero); 3 is what the SIBR viewer expects."""

_HEAD = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")
_TAIL = ("opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")

GAUSSIAN_PROPERTIES = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2") + _TAIL
"""The properties a PLY must have to be read as Gaussians (normals and f_rest are optional)."""

_FIELDS = {  # Gaussians field -> the PLY properties that hold it, in column order
    "means": ("x", "y", "z"),
    "sh0": ("f_dc_0", "f_dc_1", "f_dc_2"),
    "opacity_logits": ("opacity",),
    "log_scales": ("scale_0", "scale_1", "scale_2"),
    "quats": ("rot_0", "rot_1", "rot_2", "rot_3"),
}

_HEADER_LIMIT = 1 << 20  # a header longer than this is not a splat file worth sniffing


def gaussian_property_names(sh_degree: int = DEFAULT_SH_DEGREE) -> list[str]:
    """The standard property order for ``sh_degree`` (the f_rest count is 3 * ((d + 1)^2 - 1))."""
    if sh_degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_degree must be 0, 1, 2 or 3, got {sh_degree!r}")
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return [*_HEAD, *(f"f_rest_{i}" for i in range(n_rest)), *_TAIL]


# --- writing ---------------------------------------------------------------------------------


def write_gaussians_ply(uri: str, gaussians: Gaussians, *, sh_degree: int = DEFAULT_SH_DEGREE) -> None:
    """Write unbatched Gaussians as a standard 3DGS PLY, atomically; NaN/inf is refused first.

    Normals are zeros (3DGS never uses them, but viewers read the slots). The whole file is built in
    memory and stored with one atomic write, so a failure leaves no partial file behind.
    """
    if gaussians.batched:
        raise ValueError(
            f"write_gaussians_ply takes unbatched Gaussians (N, ...); got batch shape "
            f"{tuple(gaussians.means.shape)}: write one file per batch entry"
        )
    gaussians.validate(what=str(uri))
    names = gaussian_property_names(sh_degree)
    table = np.zeros(len(gaussians), dtype=[(name, "<f4") for name in names])
    for field, props in _FIELDS.items():
        values = getattr(gaussians, field).detach().to("cpu", torch.float32).numpy()
        values = values.reshape(len(gaussians), len(props))
        for column, prop in enumerate(props):
            table[prop] = values[:, column]
    element = plyfile.PlyElement.describe(table, "vertex")
    buffer = io.BytesIO()
    plyfile.PlyData([element], text=False, byte_order="<").write(buffer)
    storage.write_bytes(uri, buffer.getvalue())


# --- reading ---------------------------------------------------------------------------------


def read_gaussians_ply(uri: str) -> Gaussians:
    """Read a 3DGS PLY into float32 Gaussians (DC colour only).

    Higher SH bands (``f_rest_*``) are dropped, since align4d's Gaussians carry degree 0 only: a
    degree-3 file renders with its view-independent base colour. Normals and any extra properties
    are ignored. Properties may come in any order and any numeric type (they are cast to float32).
    A file with zero vertices is valid and gives empty Gaussians; callers that need an object check
    ``len()``. Everything wrong with the file raises :class:`InputError` naming the URI and why.
    """
    uri = str(uri)
    data = storage.read_bytes(uri)
    vertex = _vertex_element(_parse_ply(uri, data), uri)
    missing = missing_gaussian_properties([p.name for p in vertex.properties])
    if missing:
        raise InputError(f"not a 3D Gaussian Splatting PLY: the vertex element lacks {', '.join(missing)}", uri=uri)
    tensors = {field: _columns(vertex, props, uri) for field, props in _FIELDS.items()}
    tensors["opacity_logits"] = tensors["opacity_logits"][:, 0]
    _refuse_non_finite(tensors, uri)
    return Gaussians(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()})


def is_gaussian_ply(uri: str) -> bool:
    """Whether ``uri`` is a PLY whose header has the 3DGS properties (a mesh PLY gives False).

    Only the header is read, so sniffing a large file on object storage stays cheap. A missing file
    raises :class:`InputError` (it is neither kind); anything that is not a PLY header gives False.
    """
    properties = _header_vertex_properties(str(uri))
    return properties is not None and not missing_gaussian_properties(properties)


def missing_gaussian_properties(properties: list[str] | tuple[str, ...]) -> list[str]:
    """The required 3DGS property names absent from ``properties``, in the standard order."""
    present = set(properties)
    return [name for name in GAUSSIAN_PROPERTIES if name not in present]


def header_vertex_properties(uri: str) -> list[str] | None:
    """Property names of the ``vertex`` element from the header only; None when not a PLY header."""
    return _header_vertex_properties(str(uri))


def _parse_ply(uri: str, data: bytes) -> plyfile.PlyData:
    if not data.startswith(b"ply"):
        raise InputError("not a PLY file (it does not start with 'ply')", uri=uri)
    try:
        return plyfile.PlyData.read(io.BytesIO(data))
    except Exception as exc:  # plyfile raises many types for truncated or malformed files
        raise InputError(f"unreadable PLY ({type(exc).__name__}: {exc})", uri=uri) from None


def _vertex_element(ply: plyfile.PlyData, uri: str) -> plyfile.PlyElement:
    names = [element.name for element in ply.elements]
    if "vertex" not in names:
        found = ", ".join(names) or "none"
        raise InputError(f"PLY has no 'vertex' element (elements: {found})", uri=uri)
    return ply["vertex"]


def _columns(vertex: plyfile.PlyElement, props: tuple[str, ...], uri: str) -> np.ndarray:
    data = vertex.data
    for prop in props:
        if data.dtype[prop].kind not in "fiu" or data.dtype[prop].shape:
            raise InputError(f"PLY property {prop!r} must be a number, not {data.dtype[prop]}", uri=uri)
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf and is reported
        return np.stack([np.asarray(data[prop], dtype=np.float32) for prop in props], axis=-1)


def _refuse_non_finite(tensors: dict[str, np.ndarray], uri: str) -> None:
    problems = []
    for field, props in _FIELDS.items():
        values = tensors[field].reshape(-1, len(props))
        for column, prop in enumerate(props):
            bad = int(np.count_nonzero(~np.isfinite(values[:, column])))
            if bad:
                problems.append(f"{prop} ({bad} of {values.shape[0]})")
    if problems:
        raise InputError(f"PLY has NaN/inf values in {', '.join(problems)}", uri=uri)


def _header_vertex_properties(uri: str) -> list[str] | None:
    header = _read_header(uri)
    if header is None:
        return None
    properties: list[str] | None = None
    in_vertex = False
    for line in header.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "element":
            in_vertex = len(words) >= 2 and words[1] == "vertex"
            if in_vertex:
                properties = []
        elif words[0] == "property" and in_vertex and properties is not None and len(words) >= 3:
            properties.append(words[-1])
    return properties


def _read_header(uri: str) -> str | None:
    """The header text up to ``end_header``, read in chunks through fsspec; None if not a PLY.

    Read again from the start while the store is unreachable (``storage.patiently``).
    """
    fs, path = storage.filesystem(uri)

    def head() -> bytes:
        chunks = b""
        with fs.open(path, "rb") as handle:
            while b"end_header" not in chunks and len(chunks) < _HEADER_LIMIT:
                chunk = handle.read(4096)
                if not chunk:
                    break
                chunks += chunk
                if not chunks.startswith(b"ply"[: len(chunks)]):
                    break
        return chunks

    try:
        chunks = storage.patiently(uri, head)
    except FileNotFoundError:
        raise InputError("file not found", uri=uri) from None
    except IsADirectoryError:
        raise InputError("is a folder, a file was expected", uri=uri) from None
    end = chunks.find(b"end_header")
    if not chunks.startswith(b"ply") or end < 0:
        return None
    return chunks[:end].decode("ascii", errors="replace")
