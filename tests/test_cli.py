"""The ``align4d`` command line, run as a real process where it matters."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from align4d.cli import app
from align4d_core import runtime

runner = CliRunner()


def align4d(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m align4d.cli ARGS`` in a fresh process, as the console script does."""
    return subprocess.run(
        [sys.executable, "-m", "align4d.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sample_then_validate_in_real_processes(tmp_path):
    root = tmp_path / "sample"
    made = align4d(
        "sample",
        str(root),
        "--frames",
        "3",
        "--size",
        "32",
        "--gaussians",
        "300",
        "--items",
        "hopping_torus,waving_flag",
        "--seed",
        "5",
    )
    assert made.returncode == 0, made.stderr
    assert f"wrote 2 items to {root}" in made.stdout
    truth = json.loads((root / "items/hopping_torus/truth.json").read_text())
    assert (truth["frames"], truth["size"], truth["gaussians"], truth["seed"]) == (3, 32, 300, 5)
    eval_0 = root / "items/hopping_torus/eval/eval_0"
    assert sorted(p.name for p in eval_0.iterdir()) == ["0.png", "1.png", "2.png"]

    checked = align4d("validate", str(root))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "all 2 items are valid" in checked.stdout
    assert "hopping_torus" in checked.stdout and "waving_flag" in checked.stdout


def test_validate_reports_the_broken_item_and_field(small_sample, tmp_path):
    root = Path(shutil.copytree(small_sample, tmp_path / "dataset"))
    (root / "items/arm_swing/object.ply").unlink()
    (root / "items/twist_column/masks/0.png").write_bytes(b"not a png")
    result = align4d("validate", str(root))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "item 'arm_swing' field 'object'" in result.stdout
    assert "item 'twist_column' field 'masks'" in result.stdout
    assert "2 of 5 items are invalid" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_validate_a_missing_folder_is_a_clean_error(tmp_path):
    result = align4d("validate", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "error:" in result.stderr and "dataset folder not found" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "{file}/inside"], "cannot create the folder"),
        (["sample", "{file}"], "is a file"),
        (["sample", "{dir}/x", "--items", "nope"], "unknown sample item(s) 'nope'"),
        (["sample", "{dir}/x", "--frames", "1"], "at least 2 frames"),
        (["sample", "nosuchprotocol://bucket/x"], "not a usable location"),
        (["validate", "{file}"], "not a folder"),
    ],
    ids=["under-a-file", "onto-a-file", "unknown-item", "one-frame", "unknown-protocol", "validate-a-file"],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file")
    args = [a.format(file=blocker, dir=tmp_path) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no crash


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "sample" in result.output and "validate" in result.output


def test_tune_allocator_applies_on_glibc_only():
    applied = runtime.tune_allocator()
    expected = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
    assert applied is expected
    assert runtime.tune_allocator() is expected  # idempotent
