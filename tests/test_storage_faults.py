"""Storage faults on a real S3 endpoint: moto behind a proxy that resets connections or cuts uploads.

s3fs and botocore retry on their own; here both are set to one attempt, and storage's own patience
(``ALIGN4D_STORAGE_PATIENCE_S``) to none unless a test says otherwise, so that the fault reaches
align4d and the behaviour under test is ours: the error is classified as transient, Prefect
retries the task, a failed write leaves no object, bad input is never retried, and storage waits out
an outage shorter than its patience (``tests/test_s3_outage.py`` runs a whole flow through one).
"""

from __future__ import annotations

import logging
import uuid

import pytest
from faulty_proxy import FaultyProxy

from align4d_core.config import SampleConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.manifest import read_manifest
from align4d_core.sample import write_sample
from tasks.common import is_transient


@pytest.fixture
def faulty_s3(s3_server, monkeypatch):
    """``(proxy, root)``: s3fs talks to moto through the proxy, with its own retries and storage's patience off."""
    import fsspec
    import s3fs
    from conftest import TEST_BUCKET

    proxy = FaultyProxy(s3_server)
    saved = fsspec.config.conf.get("s3")
    fsspec.config.conf["s3"] = {
        **(saved or {}),
        "endpoint_url": proxy.url,
        "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}},
    }
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)  # s3fs's own retry loop (a class setting)
    monkeypatch.setenv(storage.PATIENCE_ENV, "0")
    s3fs.S3FileSystem.clear_instance_cache()
    root = f"s3://{TEST_BUCKET}/faults-{uuid.uuid4().hex}"
    try:
        yield proxy, root
    finally:
        proxy.drop, proxy.cut_after, proxy.outage_seconds = 0, None, 0.0
        fsspec.config.conf["s3"] = saved
        s3fs.S3FileSystem.clear_instance_cache()
        storage.remove(root, recursive=True)
        proxy.close()


def fresh_connections() -> None:
    """New S3 clients, so the next request opens a connection (and meets the armed fault)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def test_a_reset_connection_is_transient_and_a_missing_file_is_not(faulty_s3):
    proxy, root = faulty_s3
    uri = storage.join(root, "a.bin")
    storage.write_bytes(uri, b"payload")
    proxy.drop = 1_000
    fresh_connections()
    with pytest.raises(Exception) as reset:
        storage.read_bytes(uri)
    assert proxy.dropped >= 1 and is_transient(reset.value), repr(reset.value)

    proxy.drop = 0
    fresh_connections()
    with pytest.raises(InputError) as missing:
        storage.read_bytes(storage.join(root, "missing.bin"))
    assert not is_transient(missing.value)
    assert storage.read_bytes(uri) == b"payload"


def test_an_upload_cut_half_way_leaves_no_object(faulty_s3):
    proxy, root = faulty_s3
    uri = storage.join(root, "out", "big.bin")
    data = bytes(range(256)) * 4096  # 1 MiB
    proxy.cut_after = 256 * 1024
    fresh_connections()
    with pytest.raises(Exception) as cut:
        storage.write_bytes(uri, data)
    assert proxy.cut >= 1 and is_transient(cut.value), repr(cut.value)
    assert not storage.exists(uri)
    assert not storage.exists(storage.join(root, "out")) or storage.listdir(storage.join(root, "out")) == []

    proxy.cut_after = None
    fresh_connections()
    storage.write_bytes(uri, data)
    assert storage.read_bytes(uri) == data


def test_storage_waits_out_an_outage_shorter_than_its_patience_and_gives_up_after_it(faulty_s3, monkeypatch, caplog):
    import time

    proxy, root = faulty_s3
    uri = storage.join(root, "a.json")
    storage.write_json(uri, {"a": 1})
    caplog.set_level(logging.INFO, logger="align4d_core.io.storage")
    monkeypatch.setenv(storage.PATIENCE_ENV, "10")
    proxy.outage(2.0, at_once=True)
    started = time.monotonic()
    assert storage.read_json(uri) == {"a": 1}
    assert 2.0 <= time.monotonic() - started < 10 and proxy.dropped >= 2
    storage.write_json(uri, {"a": 2})
    warned = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warned) == 1 and "S3 unreachable" in warned[0] and "retrying for up to 10 s" in warned[0], warned

    monkeypatch.setenv(storage.PATIENCE_ENV, "1.5")
    proxy.outage(60.0, at_once=True)
    started = time.monotonic()
    with pytest.raises(Exception) as gave_up:
        storage.write_json(uri, {"a": 3})
    assert 1.5 <= time.monotonic() - started < 10 and is_transient(gave_up.value), repr(gave_up.value)
    proxy.outage_seconds, proxy.outage_until = 0.0, None
    fresh_connections()
    assert storage.read_json(uri) == {"a": 2}  # the write that gave up left the object as it was

    monkeypatch.setenv(storage.PATIENCE_ENV, "300")
    started = time.monotonic()
    with pytest.raises(InputError):  # a missing file is never waited for
        storage.read_bytes(storage.join(root, "missing.bin"))
    assert time.monotonic() - started < 2


def test_only_network_and_try_later_errors_are_waited_for():
    import errno

    from botocore.exceptions import ClientError, EndpointConnectionError

    def answer(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    def translated(cause: BaseException) -> OSError:  # what s3fs raises: an OSError caused by botocore's
        try:
            raise OSError(errno.EBUSY, "busy") from cause
        except OSError as error:
            return error

    waited = [
        ConnectionResetError(),
        TimeoutError(),
        EndpointConnectionError(endpoint_url="http://x"),
        translated(answer("SlowDown", 503)),
        answer("InternalError", 500),
    ]
    refused = [
        FileNotFoundError("k"),
        PermissionError("denied"),
        InputError("bad", uri="x"),
        OSError(errno.ENOSPC, "full"),
        translated(answer("AccessDenied", 403)),
        answer("NoSuchKey", 404),
    ]
    assert [storage.is_transient(e) for e in waited] == [True] * len(waited)
    assert [storage.is_transient(e) for e in refused] == [False] * len(refused)


def retries_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Retry " in r.getMessage() and r.name.startswith("prefect")]


@pytest.fixture
def s3_dataset(faulty_s3) -> tuple[FaultyProxy, str]:
    proxy, root = faulty_s3
    dataset = storage.join(root, "dataset")
    write_sample(dataset, SampleConfig(frames=2, size=32, gaussians=200, items=("twist_column",)))
    return proxy, dataset


def test_a_task_that_meets_a_transient_s3_error_is_retried_and_completes(harness, s3_dataset, caplog):
    from tasks import pairs

    proxy, dataset = s3_dataset
    (item,) = read_manifest(dataset)
    caplog.set_level(logging.INFO, logger="prefect")
    proxy.outage(1.0)  # the first attempt's first request meets resets; the retry, 3 s later, does not
    fresh_connections()
    state = pairs.with_options(retry_delay_seconds=3)(dataset, item.to_json(), return_state=True)
    assert state.is_completed(), state.message
    (retry,) = retries_logged(caplog)  # one failed attempt, then a completed one
    assert proxy.dropped >= 1 and "EndpointConnectionError" in retry and "Retry 1/3" in retry
    assert set(state.result()["hashes"]) == {"video", "object", "masks", "eval"}


def test_bad_input_is_not_retried(harness, s3_dataset, caplog):
    from tasks import pairs

    _, dataset = s3_dataset
    (item,) = read_manifest(dataset)
    storage.remove(storage.join(dataset, item.object))
    caplog.set_level(logging.INFO, logger="prefect")
    state = pairs.with_options(retry_delay_seconds=0)(dataset, item.to_json(), return_state=True)
    assert state.is_failed() and "field 'object'" in state.message
    assert retries_logged(caplog) == []
