"""done.py and hashing.py: the stage marker that makes a re-run resume, and the keys it compares."""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata
import json
from pathlib import PurePosixPath

import pytest

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.hashing import canonical_json, hash_bytes, hash_json, hash_uri
from align4d_core.io.markers import DONE_NAME, code_version, is_done, measure_peak_memory, read_done, write_done

INPUTS = {"video": "a" * 64, "object": "b" * 64}


def mark(stage: str, config_hash: str = "cfg1", inputs: dict[str, str] = INPUTS) -> str:
    return write_done(
        stage,
        config_hash=config_hash,
        input_hashes=inputs,
        timings={"total": 1.25, "search": 0.5},
        peak_memory_bytes=123456,
        extra={"vaod": 1.7},
    )


# --- done.json -------------------------------------------------------------------------------------


def test_write_and_read_done(any_root: str) -> None:
    stage = storage.join(any_root, "items/x/search")
    uri = mark(stage)
    assert uri == storage.join(stage, DONE_NAME)
    record = read_done(stage)
    assert record is not None
    assert record["config_hash"] == "cfg1" and record["input_hashes"] == INPUTS
    assert record["timings"] == {"total": 1.25, "search": 0.5}
    assert record["peak_memory_bytes"] == 123456 and record["extra"] == {"vaod": 1.7}
    assert record["code_version"] == code_version()
    assert "finished_at" in record


def test_is_done_true_only_when_both_hashes_match(any_root: str) -> None:
    stage = storage.join(any_root, "stage")
    assert not is_done(stage, config_hash="cfg1", input_hashes=INPUTS)  # nothing written yet
    mark(stage)
    assert is_done(stage, config_hash="cfg1", input_hashes=dict(reversed(list(INPUTS.items()))))
    assert not is_done(stage, config_hash="cfg2", input_hashes=INPUTS)
    assert not is_done(stage, config_hash="cfg1", input_hashes={**INPUTS, "video": "c" * 64})
    assert not is_done(stage, config_hash="cfg1", input_hashes={"video": INPUTS["video"]})
    assert not is_done(stage, config_hash="cfg1", input_hashes={**INPUTS, "extra": "d"})


@pytest.mark.parametrize("content", [b'{"config_hash": "cfg1", ', b"", b"\xff\xfe", b'["cfg1"]', b"null"])
def test_corrupt_done_counts_as_not_done(tmp_path, content: bytes) -> None:
    (tmp_path / DONE_NAME).write_bytes(content)
    assert read_done(str(tmp_path)) is None
    assert not is_done(str(tmp_path), config_hash="cfg1", input_hashes=INPUTS)


def test_done_json_is_plain_sorted_json(tmp_path) -> None:
    mark(str(tmp_path))
    record = json.loads((tmp_path / DONE_NAME).read_text())
    assert list(record) == sorted(record)


def test_write_done_refuses_bad_values(tmp_path) -> None:
    with pytest.raises(ValueError):
        write_done(str(tmp_path), config_hash="", input_hashes={}, timings={}, peak_memory_bytes=None)
    with pytest.raises(ValueError):
        write_done(str(tmp_path), config_hash="c", input_hashes={"v": 3}, timings={}, peak_memory_bytes=None)
    with pytest.raises(ValueError):
        write_done(str(tmp_path), config_hash="c", input_hashes={}, timings={"t": float("nan")}, peak_memory_bytes=1)
    assert not (tmp_path / DONE_NAME).exists()


def test_code_version_is_the_installed_distribution() -> None:
    assert code_version() == importlib.metadata.version("align4d")


def test_measure_peak_memory() -> None:
    peak = measure_peak_memory()
    assert peak is not None and peak > 10 * 2**20  # a Python process with torch holds > 10 MiB


# --- hashing ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Inner:
    steps: int
    lr: float


class Mode(enum.Enum):
    AO = "ao"


@dataclasses.dataclass
class Config:
    inner: Inner
    mode: Mode
    path: PurePosixPath
    tags: frozenset


def test_hash_json_is_canonical() -> None:
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})
    assert hash_json({"a": 1}) != hash_json({"a": 2})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert hash_json({"a": 1}) == hash_bytes(b'{"a":1}')


def test_hash_json_of_dataclasses() -> None:
    config = Config(Inner(100, 1e-3), Mode.AO, PurePosixPath("a/b"), frozenset({"y", "x"}))
    assert canonical_json(config) == ('{"inner":{"lr":0.001,"steps":100},"mode":"ao","path":"a/b","tags":["x","y"]}')
    assert hash_json(config) == hash_json(dataclasses.replace(config, tags=frozenset({"x", "y"})))
    assert hash_json(config) != hash_json(dataclasses.replace(config, inner=Inner(101, 1e-3)))


def test_hash_json_refuses_what_json_cannot_say() -> None:
    with pytest.raises(ValueError):
        hash_json({"x": float("nan")})
    with pytest.raises(TypeError):
        hash_json({"x": object()})


def test_hash_uri_file(any_root: str) -> None:
    storage.write_bytes(storage.join(any_root, "a.bin"), b"content")
    assert hash_uri(storage.join(any_root, "a.bin")) == hash_bytes(b"content")
    with pytest.raises(InputError, match="not found"):
        hash_uri(storage.join(any_root, "missing.bin"))


def make_folder(root: str, files: dict[str, bytes]) -> str:
    for rel, data in files.items():
        storage.write_bytes(storage.join(root, rel), data)
    return root


FILES = {"0.png": b"frame0", "1.png": b"frame1", "sub/deep/x.json": b"{}"}


def test_hash_uri_folder_is_stable_across_backends(any_root: str, tmp_path) -> None:
    here = make_folder(str(tmp_path / "reference"), FILES)
    there = make_folder(storage.join(any_root, "copy"), dict(reversed(list(FILES.items()))))
    assert hash_uri(here) == hash_uri(there)  # equal content, whatever the backend or write order
    assert hash_uri(there) == hash_uri(there + "/")


@pytest.mark.parametrize(
    "change",
    [
        {"1.png": b"frame1!"},  # a changed file
        {"sub/deep/y.json": b"{}"},  # an added file
        {"2.png": b"frame1"},  # a file under another name (with 1.png removed below)
    ],
)
def test_hash_uri_folder_changes_with_any_file(tmp_path, change: dict[str, bytes]) -> None:
    before = hash_uri(make_folder(str(tmp_path / "a"), FILES))
    files = {**FILES, **change}
    if "2.png" in change:
        del files["1.png"]
    after = hash_uri(make_folder(str(tmp_path / "b"), files))
    assert before != after
