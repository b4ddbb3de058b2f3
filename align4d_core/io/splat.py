"""The compact web ``.splat`` format: 32 bytes per Gaussian, the file web viewers stream.

The format has no header and no name of its own in any spec; it is defined by the code that made it
popular, antimatter15/splat. Every fact below was read in that repository:

* ``convert.py`` (the PLY -> .splat converter) writes, per Gaussian, ``position`` float32 x3
  (``x y z``), ``scale`` float32 x3 (``exp(scale_i)``: linear, not the PLY's log), colour uint8 x4
  (RGB ``= (0.5 + SH_C0 * f_dc_i) * 255``, A ``= sigmoid(opacity) * 255``, both ``clip(0, 255)``
  then ``astype(np.uint8)``) and rotation uint8 x4 (``rot_0 .. rot_3``, the PLY's wxyz order,
  normalised, ``q * 128 + 128``, clipped alike): 12 + 12 + 4 + 4 = 32 bytes.
  It writes the records in the order ``argsort(-exp(scale_0 + scale_1 + scale_2) / (1 +
  exp(-opacity)))``: largest ``volume * opacity`` first.
* ``main.js`` (the viewer) reads the records through a ``Float32Array`` and a ``Uint8Array`` over the
  downloaded bytes; it decodes a rotation byte as ``(b - 128) / 128`` with ``rot[0]`` the real part
  (w), and a colour byte as ``b / 255``. Its in-browser PLY conversion (``processPlyBuffer``) sorts
  by the same ``volume * opacity`` key, descending, and stores the same formulas into a
  ``Uint8ClampedArray``, which clamps and rounds to nearest (ties to even), where convert.py's
  ``astype`` truncates. We round as main.js does: half the error, and a file read and written again
  keeps its colour bytes (truncating ``b / 255 * 255`` computed in floats can give ``b - 1``).
  Either way a byte differs by at most one step. While downloading it draws the
  ``floor(bytes / 32)`` records already received, so this order is what viewers expect: the large,
  opaque Gaussians that give an object its shape arrive first and a partly loaded file already looks
  like the object.
* Byte order: little-endian. convert.py writes with numpy's ``tobytes`` (native order) and main.js
  reads with a ``Float32Array`` (platform order), both little-endian on the x86 and ARM machines
  they run on; splat-transform's reader says so explicitly (``DataView.getFloat32(offset, true)``).
  We write ``<f4`` explicitly, so that a big-endian machine writes the same file.

A reader nobody here wrote, ``@playcanvas/splat-transform`` (its ``readSplat``), reads the same
layout and refuses a file whose size is not a multiple of 32 or that is empty;
``tests/test_splat_external.py`` checks our files against it.

Precision of a write/read round trip, set by the format: positions are exact in float32; scales are
float32 (``log_scales`` come back within float32 rounding); colours (RGB clipped to [0, 1]) and
opacities come back within half a step, 0.5/255; a rotation comes back within 1/128 per component of
the normalised quaternion (half a step, 0.5/128, except a component of +1, which ``q * 128 + 128 =
256`` clips to 255), with the same sign (the writer does not flip it). Higher SH bands do not exist in
align4d's Gaussians and have no place in the format.
"""

from __future__ import annotations

import numpy as np
import torch

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.scene.gaussians import SH_C0, Gaussians, inverse_sigmoid, rgb_to_sh0

__all__ = ["SPLAT_RECORD", "importance_order", "read_splat", "splat_bytes", "write_splat"]

SPLAT_RECORD = np.dtype(
    [("position", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rotation", "u1", (4,))]
)
"""One Gaussian in a ``.splat`` file (antimatter15/splat convert.py, main.js): 32 bytes, no padding."""


# --- writing ---------------------------------------------------------------------------------


def write_splat(uri: str, gaussians: Gaussians) -> None:
    """Write unbatched, non-empty Gaussians as a ``.splat`` file, atomically (file:// and s3://).

    An empty file is refused: the format has no header, so zero Gaussians cannot be told from a
    truncated download, and readers (splat-transform's ``readSplat``) refuse it.
    """
    storage.write_bytes(uri, splat_bytes(gaussians, what=str(uri)))


def splat_bytes(gaussians: Gaussians, *, what: str = "gaussians") -> bytes:
    """The ``.splat`` file content for ``gaussians``, records in :func:`importance_order`.

    ``what`` names the destination in errors. NaN/inf, batched or empty Gaussians are refused, and
    so are values that float32 cannot hold (a position beyond its range, a log-scale whose ``exp``
    overflows or underflows to 0), since the file could not be read back as the same Gaussians.
    """
    _refuse_unwritable(gaussians, what)
    g = gaussians.detach().to("cpu", torch.float64)
    records = np.empty(len(g), dtype=SPLAT_RECORD)
    with np.errstate(over="ignore", under="ignore"):  # reported by _refuse_unrepresentable
        records["position"] = g.means.numpy()
        records["scale"] = np.exp(g.log_scales.numpy())
    records["rgba"][:, :3] = _to_uint8((0.5 + SH_C0 * g.sh0.numpy()) * 255.0)
    records["rgba"][:, 3] = _to_uint8(torch.sigmoid(g.opacity_logits).numpy() * 255.0)
    records["rotation"] = _to_uint8(g.rotations.numpy() * 128.0 + 128.0)
    _refuse_unrepresentable(records, what)
    return records[importance_order(g).numpy()].tobytes()


def importance_order(gaussians: Gaussians) -> torch.Tensor:
    """Indices that sort by ``exp(sum of log-scales) * sigmoid(opacity)``, largest first.

    This is antimatter15/splat convert.py's ``argsort(-exp(s0 + s1 + s2) / (1 + exp(-opacity)))``
    and main.js's ``processPlyBuffer`` order; see the module docstring for why viewers expect it. It
    is computed as ``s0 + s1 + s2 + logsigmoid(opacity)`` in float64 (the log of the same key, so
    the same order, without the overflow of ``exp`` in float32), and stably: equal keys keep their
    input order, so a file is a deterministic function of its Gaussians.
    """
    g = gaussians.detach().to("cpu", torch.float64)
    log_key = g.log_scales.sum(dim=-1) + torch.nn.functional.logsigmoid(g.opacity_logits)
    return torch.argsort(-log_key, stable=True)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """main.js's ``Uint8ClampedArray`` store: clipped to [0, 255], rounded to nearest, ties to even."""
    return np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)


def _refuse_unwritable(gaussians: Gaussians, what: str) -> None:
    if gaussians.batched:
        raise ValueError(
            f"write_splat takes unbatched Gaussians (N, ...); got batch shape "
            f"{tuple(gaussians.means.shape)}: write one file per batch entry"
        )
    gaussians.validate(what=what)
    if len(gaussians) == 0:
        raise InputError("a .splat file cannot hold zero Gaussians (it would be an empty file)", uri=what)


def _refuse_unrepresentable(records: np.ndarray, what: str) -> None:
    problems = []
    bad_position = ~np.isfinite(records["position"]).all(axis=1)
    if bad_position.any():
        problems.append(f"{int(bad_position.sum())} positions beyond float32's range")
    scales = records["scale"]
    bad_scale = ~(np.isfinite(scales) & (scales > 0)).all(axis=1)
    if bad_scale.any():
        problems.append(f"{int(bad_scale.sum())} scales whose exp is inf or 0 in float32")
    if problems:
        raise InputError(f"not representable in a .splat file: {', '.join(problems)}", uri=what)


# --- reading ---------------------------------------------------------------------------------


def read_splat(uri: str) -> Gaussians:
    """Read a ``.splat`` file into float32 Gaussians, in the file's order.

    The decoding inverts the writer: ``log_scales = log(scale)``, ``sh0`` from ``rgb / 255``,
    ``opacity_logits = logit(a / 255)`` (clamped to 1e-6 .. 1 - 1e-6, so that a = 0 or 255 stays
    finite; computed in float64 and then rounded to float32, as splat-transform does) and ``quats = (b - 128) / 128`` as antimatter15/splat main.js
    decodes it (not re-normalised; ``Gaussians.rotations`` normalises). A size that is not a
    multiple of 32, an empty file, non-finite positions, non-positive scales and the all-128
    rotation (no rotation at all) raise :class:`InputError` naming the file and the reason.
    """
    uri = str(uri)
    records = _parse_records(uri, storage.read_bytes(uri))
    _refuse_unreadable(records, uri)
    rgba = torch.from_numpy(records["rgba"].astype(np.float64)) / 255.0
    gaussians = Gaussians(
        means=torch.from_numpy(records["position"].copy()),
        log_scales=torch.from_numpy(np.log(records["scale"].astype(np.float64)).astype(np.float32)),
        quats=torch.from_numpy((records["rotation"].astype(np.float32) - 128.0) / 128.0),
        opacity_logits=inverse_sigmoid(rgba[:, 3]).float(),
        sh0=rgb_to_sh0(rgba[:, :3]).float(),
    )
    return gaussians.validate(what=uri)


def _parse_records(uri: str, data: bytes) -> np.ndarray:
    if not data:
        raise InputError("empty .splat file (a .splat file holds 32 bytes per Gaussian)", uri=uri)
    if len(data) % SPLAT_RECORD.itemsize:
        raise InputError(
            f"not a .splat file: its size, {len(data)} bytes, is not a multiple of 32 (bytes per Gaussian)",
            uri=uri,
        )
    return np.frombuffer(data, dtype=SPLAT_RECORD)


def _refuse_unreadable(records: np.ndarray, uri: str) -> None:
    n = len(records)
    problems = []
    bad_position = int((~np.isfinite(records["position"]).all(axis=1)).sum())
    if bad_position:
        problems.append(f"{bad_position} of {n} positions are NaN/inf")
    scales = records["scale"]
    bad_scale = int((~(np.isfinite(scales) & (scales > 0)).all(axis=1)).sum())
    if bad_scale:
        problems.append(f"{bad_scale} of {n} scales are not positive and finite")
    no_rotation = int((records["rotation"] == 128).all(axis=1).sum())
    if no_rotation:
        problems.append(f"{no_rotation} of {n} rotations are all 128 (a zero quaternion)")
    if problems:
        raise InputError(f"bad .splat file: {'; '.join(problems)}", uri=uri)
