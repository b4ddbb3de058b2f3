"""storage.py on every backend: round trips, atomic writes, path safety, listing and copies."""

from __future__ import annotations

import os

import pytest

from align4d_core.errors import InputError
from align4d_core.io import storage


def _local_dir(uri: str) -> str:
    fs, path = storage.filesystem(uri)
    return path


def test_round_trips(any_root: str) -> None:
    storage.write_bytes(storage.join(any_root, "a/blob.bin"), b"\x00\x01\xff")
    storage.write_text(storage.join(any_root, "a/text.txt"), "héllo\n")
    storage.write_json(storage.join(any_root, "b/c.json"), {"z": 1, "a": [1.5, None, "x"]})

    assert storage.read_bytes(storage.join(any_root, "a/blob.bin")) == b"\x00\x01\xff"
    assert storage.read_text(storage.join(any_root, "a/text.txt")) == "héllo\n"
    assert storage.read_json(storage.join(any_root, "b/c.json")) == {"z": 1, "a": [1.5, None, "x"]}
    # sorted keys: equal content gives equal bytes
    assert storage.read_text(storage.join(any_root, "b/c.json")).index('"a"') < storage.read_text(
        storage.join(any_root, "b/c.json")
    ).index('"z"')


def test_overwrite_replaces_content(any_root: str) -> None:
    uri = storage.join(any_root, "x.txt")
    storage.write_text(uri, "first, longer content")
    storage.write_text(uri, "second")
    assert storage.read_text(uri) == "second"


def test_failed_write_leaves_nothing(any_root: str) -> None:
    uri = storage.join(any_root, "folder/out.bin")
    storage.makedirs(storage.join(any_root, "folder"))
    with pytest.raises(RuntimeError, match="boom"):
        with storage.open_atomic(uri) as handle:
            handle.write(b"half")
            raise RuntimeError("boom")
    assert not storage.exists(uri)
    assert storage.listdir(storage.join(any_root, "folder")) == []
    if storage.is_local(any_root):  # no temporary file left beside the target either
        assert os.listdir(_local_dir(storage.join(any_root, "folder"))) == []


def test_failed_overwrite_keeps_old_object(any_root: str) -> None:
    uri = storage.join(any_root, "keep.json")
    storage.write_json(uri, {"v": 1})
    with pytest.raises(RuntimeError):
        with storage.open_atomic(uri, "w") as handle:
            handle.write('{"v": 2')  # a half-written JSON
            raise RuntimeError("interrupted")
    assert storage.read_json(uri) == {"v": 1}
    assert storage.listdir(any_root) == ["keep.json"]


def test_failed_atomic_local_path_leaves_nothing(any_root: str) -> None:
    uri = storage.join(any_root, "video.mp4")
    with pytest.raises(ValueError):
        with storage.atomic_local_path(uri, suffix=".mp4") as tmp:
            with open(tmp, "wb") as handle:
                handle.write(b"partial")
            raise ValueError("encoder failed")
    assert not storage.exists(uri)
    assert storage.listdir(any_root) == []


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/abs", "s3://x", "C:\\x", "", "  ", "..", ".", "a\\b"])
def test_safe_child_refuses(bad: str) -> None:
    with pytest.raises(InputError):
        storage.safe_child("s3://bucket/data", bad)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("a/b.png", "s3://bucket/data/a/b.png"),
        ("a/./b", "s3://bucket/data/a/b"),
        ("a/../b", "s3://bucket/data/b"),
    ],
)
def test_safe_child_accepts(relative: str, expected: str) -> None:
    assert storage.safe_child("s3://bucket/data", relative) == expected


def test_safe_child_error_names_the_path() -> None:
    with pytest.raises(InputError, match=r"escapes the dataset root") as info:
        storage.safe_child("/data", "a/../../etc/passwd")
    assert "a/../../etc/passwd" in str(info.value)


def test_exists_listdir_remove(any_root: str) -> None:
    storage.write_text(storage.join(any_root, "d/one.txt"), "1")
    storage.write_text(storage.join(any_root, "d/two.txt"), "2")
    storage.write_text(storage.join(any_root, "d/sub/three.txt"), "3")

    assert storage.exists(storage.join(any_root, "d/one.txt"))
    assert storage.isdir(storage.join(any_root, "d"))
    assert not storage.isdir(storage.join(any_root, "d/one.txt"))
    assert storage.listdir(storage.join(any_root, "d")) == ["one.txt", "sub", "two.txt"]
    assert storage.listdir(storage.join(any_root, "missing")) == []

    storage.remove(storage.join(any_root, "d/one.txt"))
    assert not storage.exists(storage.join(any_root, "d/one.txt"))
    storage.remove(storage.join(any_root, "d/one.txt"))  # a missing target is fine
    storage.remove(storage.join(any_root, "d"), recursive=True)
    assert not storage.exists(storage.join(any_root, "d/sub/three.txt"))
    assert storage.listdir(storage.join(any_root, "d")) == []


def test_read_missing_is_input_error(any_root: str) -> None:
    uri = storage.join(any_root, "nope.json")
    with pytest.raises(InputError, match="file not found") as info:
        storage.read_json(uri)
    assert info.value.uri == uri


def test_read_corrupt_json_and_text(any_root: str) -> None:
    storage.write_bytes(storage.join(any_root, "bad.json"), b'{"a": ')
    storage.write_bytes(storage.join(any_root, "bad.txt"), b"\xff\xfe\xfa")
    with pytest.raises(InputError, match="not valid JSON"):
        storage.read_json(storage.join(any_root, "bad.json"))
    with pytest.raises(InputError, match="not UTF-8"):
        storage.read_text(storage.join(any_root, "bad.txt"))


def test_local_copy_and_atomic_local_path_on_s3(s3_bucket: str) -> None:
    uri = storage.join(s3_bucket, "deep/file.bin")
    with storage.atomic_local_path(uri, suffix=".bin") as tmp:
        assert tmp.endswith(".bin")
        with open(tmp, "wb") as handle:
            handle.write(b"payload")
        assert not storage.exists(uri)  # nothing visible before the block ends
    assert storage.read_bytes(uri) == b"payload"

    with storage.local_copy(uri) as local:
        assert os.path.isfile(local) and local.endswith(".bin")
        with open(local, "rb") as handle:
            assert handle.read() == b"payload"
    assert not os.path.exists(local)  # the temporary copy is gone afterwards

    with pytest.raises(InputError, match="file not found"):
        with storage.local_copy(storage.join(s3_bucket, "missing.bin")):
            pass


def test_copy_file_between_backends(s3_bucket: str, tmp_path) -> None:
    src = str(tmp_path / "src.txt")
    storage.write_text(src, "across")
    storage.copy_file(src, storage.join(s3_bucket, "copy.txt"))
    storage.copy_file(storage.join(s3_bucket, "copy.txt"), str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "across"


def test_s3_endpoint_comes_from_fsspec_config(s3_server: str, s3_bucket: str) -> None:
    fs, _ = storage.filesystem(s3_bucket)
    assert fs.endpoint_url == s3_server  # from FSSPEC_S3_ENDPOINT_URL / fsspec config, not code
