"""The S3 endpoint goes away for 30 s in the middle of a run: the run waits, completes, and leaves no partial object.

The real flow runs on the Prefect test server with its dataset and its outputs on moto, reached through
:class:`~faulty_proxy.FaultyProxy` with s3fs's and botocore's own retries left at their defaults. A
watcher that talks to moto directly (not through the proxy) arms a 30 s outage, which also resets the
open connections, as soon as the first item's last stage (evaluate) writes its ``done.json``: that
item's ``row.json`` (written by the item flow itself, outside any task), the dataset flow's reading of
it, the second item's first tasks and the tables are still to come. Without storage's patience
(``ALIGN4D_STORAGE_PATIENCE_S``) the first of those fails the run; with it the run waits, and no task
is retried (a stage is not redone because the store was away).
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import uuid

import pandas as pd
import pytest
from faulty_proxy import FaultyProxy

from align4d_core.config import SampleConfig
from align4d_core.io import storage
from align4d_core.pipeline.runs import RunSpec
from align4d_core.sample import write_sample

FAST = {"optimize": {"steps": 3, "frames_per_step": 2, "resolution_schedule": [[1.0, 32]]}}
ITEMS = ("twist_column", "arm_swing")
OUTAGE_S = 30.0


@pytest.fixture
def s3_behind_proxy(s3_server):
    """``(proxy, root, client)``: s3fs reaches moto through the proxy; ``client`` is boto3 on moto itself."""
    import boto3
    import fsspec
    import s3fs
    from conftest import TEST_BUCKET

    proxy = FaultyProxy(s3_server)
    saved = fsspec.config.conf.get("s3")
    fsspec.config.conf["s3"] = {**(saved or {}), "endpoint_url": proxy.url}
    s3fs.S3FileSystem.clear_instance_cache()
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    root = f"s3://{TEST_BUCKET}/outage-{uuid.uuid4().hex}"
    try:
        yield proxy, root, client
    finally:
        proxy.outage_seconds, proxy.outage_until = 0.0, None
        fsspec.config.conf["s3"] = saved
        s3fs.S3FileSystem.clear_instance_cache()
        storage.remove(root, recursive=True)
        proxy.close()


class Recorded(logging.Handler):
    """The messages of the records it is given."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def keys_under(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def arm_when_evaluated(proxy: FaultyProxy, client, bucket: str, prefix: str, stop: threading.Event) -> dict:
    """Start a thread that arms the outage when the first ``stages/evaluate/done.json`` appears."""
    armed: dict = {}

    def watch() -> None:
        while not stop.is_set():
            if any(k.endswith("stages/evaluate/done.json") for k in keys_under(client, bucket, prefix)):
                proxy.outage(OUTAGE_S, at_once=True)
                armed["at"] = time.monotonic()
                return
            stop.wait(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    armed["thread"] = thread
    return armed


def check_whole(client, bucket: str, key: str) -> None:
    """The object parses as what its name says it is (a cut upload would not)."""
    import plyfile
    from PIL import Image

    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert data, key
    if key.endswith((".json", ".jsonl")):
        for line in data.decode().splitlines() if key.endswith(".jsonl") else [data.decode()]:
            if line.strip():
                json.loads(line)
    elif key.endswith(".ply"):
        assert len(plyfile.PlyData.read(io.BytesIO(data))["vertex"].data) > 0, key
    elif key.endswith(".png"):
        Image.open(io.BytesIO(data)).load()
    elif key.endswith(".csv"):
        pd.read_csv(io.BytesIO(data))
    elif key.endswith(".mp4"):
        assert b"ftyp" in data[:32] and b"moov" in data, key


def test_a_run_rides_out_a_30_s_s3_outage_and_leaves_no_partial_object(harness, s3_behind_proxy, monkeypatch, caplog):
    from conftest import TEST_BUCKET

    from flows.align4d import align4d

    proxy, root, client = s3_behind_proxy
    monkeypatch.delenv("ALIGN4D_STORAGE_PATIENCE_S", raising=False)  # the default patience
    dataset, out = storage.join(root, "dataset"), storage.join(root, "runs")
    write_sample(dataset, SampleConfig(frames=4, size=32, gaussians=300, items=ITEMS))
    prefix = root.removeprefix(f"s3://{TEST_BUCKET}/")

    stop = threading.Event()
    caplog.set_level(logging.INFO)
    storage_log = Recorded()
    logging.getLogger("align4d_core.io.storage").addHandler(storage_log)  # Prefect's logging set-up may drop caplog's
    armed = arm_when_evaluated(proxy, client, TEST_BUCKET, f"{prefix}/runs/", stop)
    started = time.monotonic()
    try:
        state = align4d(dataset=dataset, out=out, settings=FAST, methods=["align4d"], return_state=True)
    finally:
        stop.set()
        armed["thread"].join(5)
        logging.getLogger("align4d_core.io.storage").removeHandler(storage_log)
    print(f"run took {time.monotonic() - started:.1f} s; {proxy.dropped} connections reset in the outage")

    assert "at" in armed, "the outage was never armed"
    assert proxy.dropped > 0, "nothing met the outage"
    assert state.is_completed(), state.message
    assert time.monotonic() - armed["at"] >= OUTAGE_S  # the run ended after the outage, not before it
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "Retry " in m] == []  # the tasks waited; none failed and ran again
    warned = [m for m in storage_log.messages if "unreachable" in m]
    assert len(warned) >= 1 and "S3 unreachable" in warned[0] and "retrying for up to 300 s" in warned[0], warned

    spec = RunSpec(dataset, out, FAST, ("align4d",))
    table = pd.read_csv(io.BytesIO(storage.read_bytes(storage.join(spec.root, "tables", "results.csv"))))
    assert sorted(table["item"]) == sorted(ITEMS)
    assert (table["status"] == "completed").all(), table[["item", "status", "error"]]

    keys = keys_under(client, TEST_BUCKET, f"{prefix}/runs/")
    assert not [k for k in keys if ".tmp" in k or "/part" in k.rsplit("/", 1)[-1]], keys
    for key in keys:
        check_whole(client, TEST_BUCKET, key)
    uploads = client.list_multipart_uploads(Bucket=TEST_BUCKET, Prefix=prefix).get("Uploads", [])
    assert uploads == [], uploads


SHORT_OUTAGE_S = 12.0  # longer than botocore's own retries ride out on a listing


def test_the_pair_lease_and_the_model_cache_wait_out_an_outage_too(s3_behind_proxy, tmp_path, monkeypatch):
    """The two storage users that talk to the filesystem directly, not through ``storage``'s functions:
    the lease's conditional create (``io/lease.py``) and the model cache's listing and copy
    (``pairs/model_cache.py``). Each starts while S3 is away and completes once it is back."""
    from align4d_core.io import lease
    from align4d_core.pairs import model_cache

    proxy, root, _ = s3_behind_proxy
    monkeypatch.delenv("ALIGN4D_STORAGE_PATIENCE_S", raising=False)
    monkeypatch.setenv("ALIGN4D_MODEL_CACHE", str(tmp_path / "models"))
    model = storage.join(root, "model")
    storage.write_bytes(storage.join(model, "unet", "config.json"), b'{"in_channels": 8}')
    record = json.dumps({"owner": "test", "token": uuid.uuid4().hex}).encode()

    for what, action, outage in (
        # s3fs retries a PUT by itself for about 13 s: the 30 s outage is what outlasts it
        ("the lease's conditional create", lambda: lease._create(storage.join(root, "pair.lock.1"), record), OUTAGE_S),
        ("the model cache's copy", lambda: model_cache.sync_model(model), SHORT_OUTAGE_S),
    ):
        proxy.dropped = 0
        proxy.outage(outage, at_once=True)
        started = time.monotonic()
        result = action()
        took = time.monotonic() - started
        assert proxy.dropped > 0, f"{what}: nothing met the outage"
        assert took >= outage - 1, f"{what} ended after {took:.1f} s, inside the outage"
        print(f"{what}: done {took:.1f} s after the outage began ({proxy.dropped} connections reset)")
        if what.startswith("the lease"):
            assert result is True and storage.read_json(storage.join(root, "pair.lock.1"))["owner"] == "test"
        else:
            with open(os.path.join(result, "unet", "config.json")) as handle:
                assert json.load(handle) == {"in_channels": 8}
