"""Our PLY and .splat files, read by a reader nobody here wrote: PlayCanvas's splat-transform.

``@playcanvas/splat-transform`` (npm, pinned in ``tools/splat-reader/package-lock.json``) is the
converter behind SuperSplat; it reads 3DGS ``.ply`` and ``.splat`` files and writes CSV with one
column per raw parameter (``x, y, z, f_dc_*, opacity, scale_*, rot_*``; logit opacity and log
scales, as in a PLY). Each test writes a file with align4d's writer, converts it with the tool's
CLI and compares the CSV with the Gaussians that were written. ``sh scripts/system-packages.sh``
installs the tool (the README's test command runs it), so a missing tool fails rather than skips.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_splat import varied_gaussians

from align4d_core.io.ply import write_gaussians_ply
from align4d_core.io.splat import importance_order, read_splat, write_splat
from align4d_core.scene.gaussians import SH_C0

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "splat-reader" / "node_modules" / ".bin" / "splat-transform"
PINNED_VERSION = "2.7.1"
TIMEOUT_S = 120
STEP = 1 / 255
FLOAT_SLACK = 1e-6


@pytest.fixture(scope="module")
def splat_transform() -> Path:
    if not TOOL.exists():
        pytest.fail(
            f"{TOOL.relative_to(ROOT)} is missing: run `sh scripts/system-packages.sh` (it installs node, npm "
            "and the pinned @playcanvas/splat-transform with `npm ci --prefix tools/splat-reader`)"
        )
    version = _run([str(TOOL), "--version"])
    said = version.stdout + version.stderr  # it prints its version on stderr
    if version.returncode != 0:  # e.g. `#!/usr/bin/env node` finds no node
        pytest.fail(f"{TOOL.relative_to(ROOT)} does not run: run `sh scripts/system-packages.sh`\n{said}")
    assert f"splat-transform v{PINNED_VERSION}" in said, said
    return TOOL


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def to_csv(tool: Path, source: Path) -> dict[str, np.ndarray]:
    """The tool's CSV of ``source`` as float64 columns by name (its numbers are float32 in full)."""
    target = source.with_suffix(source.suffix + ".csv")
    result = _run([str(tool), "--quiet", "--overwrite", str(source), str(target)])
    assert result.returncode == 0, f"splat-transform failed on {source.name}:\n{result.stdout}\n{result.stderr}"
    lines = target.read_text().splitlines()
    names = lines[0].split(",")
    values = np.array([[float(v) for v in line.split(",")] for line in lines[1:]], dtype=np.float64)
    return {name: values[:, i] for i, name in enumerate(names)}


def columns(table: dict[str, np.ndarray], *names: str) -> np.ndarray:
    return np.stack([table[name] for name in names], axis=-1)


def test_the_tool_reads_our_ply_as_we_wrote_it(splat_transform, tmp_path):
    gaussians = varied_gaussians()
    path = tmp_path / "object.ply"
    write_gaussians_ply(str(path), gaussians)  # the default: degree 3, 45 zero f_rest
    table = to_csv(splat_transform, path)

    assert len(table["x"]) == len(gaussians) == 300
    f32 = lambda *names: columns(table, *names).astype(np.float32)  # noqa: E731
    # a PLY is lossless: every value comes back as the same float32
    assert np.array_equal(f32("x", "y", "z"), gaussians.means.numpy())
    assert np.array_equal(f32("f_dc_0", "f_dc_1", "f_dc_2"), gaussians.sh0.numpy())
    assert np.array_equal(f32("opacity")[:, 0], gaussians.opacity_logits.numpy())
    assert np.array_equal(f32("scale_0", "scale_1", "scale_2"), gaussians.log_scales.numpy())
    assert np.array_equal(f32("rot_0", "rot_1", "rot_2", "rot_3"), gaussians.quats.numpy())
    assert np.array_equal(f32(*(f"f_rest_{i}" for i in range(45))), np.zeros((300, 45), np.float32))


def test_the_tool_reads_our_splat_within_its_quantisation(splat_transform, tmp_path):
    gaussians = varied_gaussians()
    path = tmp_path / "object.splat"
    write_splat(str(path), gaussians)
    table = to_csv(splat_transform, path)
    expected = gaussians.select(importance_order(gaussians))  # the file's order

    assert len(table["x"]) == 300
    assert np.array_equal(columns(table, "x", "y", "z").astype(np.float32), expected.means.numpy())
    np.testing.assert_allclose(
        columns(table, "scale_0", "scale_1", "scale_2"), expected.log_scales.numpy(), rtol=0, atol=FLOAT_SLACK
    )
    rgb = 0.5 + SH_C0 * columns(table, "f_dc_0", "f_dc_1", "f_dc_2")  # the tool reports SH: back to RGB
    _assert_within(rgb, expected.colors.clamp(0, 1).numpy(), STEP / 2)
    opacity = 1 / (1 + np.exp(-table["opacity"]))
    _assert_within(opacity, expected.opacities.numpy(), STEP / 2)
    rotation = columns(table, "rot_0", "rot_1", "rot_2", "rot_3")  # the tool normalises them
    agreement = np.abs((rotation * expected.rotations.numpy()).sum(axis=-1))  # up to sign
    assert float(agreement.min()) > 0.9995, float(agreement.min())  # per component < 1/64


def test_the_tool_and_read_splat_decode_the_same_values(splat_transform, tmp_path):
    """Same float32 values, bit for bit; rotations aside: the tool decodes ``b / 255 * 2 - 1`` and
    normalises, read_splat decodes ``(b - 128) / 128`` as antimatter15/splat's viewer does."""
    path = tmp_path / "object.splat"
    write_splat(str(path), varied_gaussians(seed=8))
    table = to_csv(splat_transform, path)
    ours = read_splat(str(path))

    f32 = lambda *names: columns(table, *names).astype(np.float32)  # noqa: E731
    assert np.array_equal(f32("x", "y", "z"), ours.means.numpy())
    assert np.array_equal(f32("scale_0", "scale_1", "scale_2"), ours.log_scales.numpy())
    assert np.array_equal(f32("f_dc_0", "f_dc_1", "f_dc_2"), ours.sh0.numpy())
    assert np.array_equal(f32("opacity")[:, 0], ours.opacity_logits.numpy())
    agreement = np.abs((f32("rot_0", "rot_1", "rot_2", "rot_3") * ours.rotations.numpy()).sum(axis=-1))
    assert float(agreement.min()) > 0.9995, float(agreement.min())  # per component < 1/64


def test_the_tool_refuses_what_read_splat_refuses(splat_transform, tmp_path):
    path = tmp_path / "truncated.splat"
    write_splat(str(path), varied_gaussians(n=2))
    path.write_bytes(path.read_bytes()[:33])
    result = _run([str(splat_transform), "--quiet", "--overwrite", str(path), str(tmp_path / "out.csv")])
    assert result.returncode != 0
    assert "not a multiple of 32" in result.stdout + result.stderr


def _assert_within(read: np.ndarray, true: np.ndarray, bound: float) -> None:
    error = np.abs(read - true)
    assert float(error.max()) <= bound + FLOAT_SLACK, float(error.max())
    assert float(error.max()) > bound / 4, "no quantisation seen: is this really the .splat path?"
