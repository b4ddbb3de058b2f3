"""Leases in storage (``align4d_core.io.lease``) and the fault they fix: two workers, one pair.

The methods of an item share its generated pair and run as separate subflows, possibly at once on
different workers. The primitive is tested on local files and on S3 (moto on loopback): contenders
racing in threads, release, a killed holder's stale lease taken over by exactly one, the heartbeat,
a bounded wait. The fault itself runs the pair stage of one dataset item in two OS processes at the
same moment against one run folder, with a slow, nondeterministic image-to-3D backend registered
through the backend seam (``register_backend``): exactly one generates, both return the same pair,
nothing partial or stray is left, and the lease is gone. Set ``A4D_PAIR_LEASE_BYPASS=1`` to run the
workers without the lease and watch the fault test fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from killing import sigkill_when

from align4d_core.io import lease, storage
from align4d_core.io.hashing import hash_uri
from align4d_core.io.manifest import Item, write_manifest
from align4d_core.io.markers import read_done
from align4d_core.io.media import write_frames
from align4d_core.pairs.stage import pair_lock
from align4d_core.pipeline.runs import pair_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["file", "s3"])
def root(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh storage root: a local folder, or a prefix of the moto S3 bucket."""
    if request.param == "file":
        return (tmp_path / "root").as_uri()
    return request.getfixturevalue("s3_bucket")


def lease_files(lock: str) -> list[str]:
    head, _, name = lock.rpartition("/")
    return [entry for entry in storage.listdir(head) if entry.startswith(name)]


def contend(lock: str, n: int, **kwargs) -> list[lease.Lease | None]:
    """``n`` threads call try_acquire at the same moment; their results."""
    barrier, results = threading.Barrier(n), [None] * n

    def one(i: int) -> None:
        barrier.wait()
        results[i] = lease.try_acquire(lock, owner=f"worker-{i}", **kwargs)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# --- the primitive -------------------------------------------------------------------------------


def test_exactly_one_contender_acquires_and_release_frees_it(root):
    lock = storage.join(root, "items/a/.pair.lock")
    won = [held for held in contend(lock, 4) if held is not None]
    assert len(won) == 1 and won[0].generation == 0
    assert lease.try_acquire(lock, owner="late") is None
    assert lease.holder(lock)["owner"] == won[0].owner
    won[0].release()
    assert lease_files(lock) == [] and lease.holder(lock) is None
    again = lease.try_acquire(lock, owner="next")
    assert again is not None and again.generation == 0
    again.release()
    assert lease_files(lock) == []


def test_a_killed_holders_stale_lease_is_taken_over_by_exactly_one(root):
    lock = storage.join(root, "items/a/.pair.lock")
    killed = {"owner": "gone:1", "token": "t", "generation": 3, "lease_s": 600.0, "heartbeat_at": time.time() - 601}
    storage.write_json(f"{lock}.3", killed)
    won = [held for held in contend(lock, 4) if held is not None]
    assert len(won) == 1 and won[0].generation == 4
    assert lease_files(lock) == [".pair.lock.4"]  # the dead generation is gone
    won[0].release()
    assert lease_files(lock) == []


def test_a_holder_that_missed_its_heartbeat_loses_the_lease_and_knows(root):
    lock = storage.join(root, "items/a/.pair.lock")
    first = lease.try_acquire(lock, lease_s=0.3, owner="first")  # no heartbeat started
    assert first is not None and lease.try_acquire(lock, owner="early") is None
    time.sleep(0.4)
    second = lease.try_acquire(lock, owner="second")
    assert second is not None and second.generation == first.generation + 1
    assert not first.refresh() and first.lost
    with pytest.raises(lease.LeaseLost, match="taken over by second"):
        first.ensure()
    first.release()  # must not remove the new holder's lease
    assert lease.holder(lock)["owner"] == "second"
    second.ensure()
    second.release()
    assert lease_files(lock) == []


def test_the_heartbeat_keeps_a_lease_alive_past_its_length(root):
    lock = storage.join(root, "items/a/.pair.lock")
    held = lease.try_acquire(lock, lease_s=1.0, owner="alive")
    held.start_heartbeat(interval_s=0.1)
    try:
        time.sleep(1.5)
        assert lease.try_acquire(lock, owner="other") is None
        held.ensure()
    finally:
        held.release()
    assert lease_files(lock) == []


def test_waiting_is_bounded_names_the_holder_and_ends_when_the_work_is_done(root):
    lock = storage.join(root, "items/a/.pair.lock")
    with lease.exclusive(lock, owner="host-a:17") as held:
        assert held is not None and lease.holder(lock)["owner"] == "host-a:17"
        started = time.monotonic()
        with pytest.raises(lease.LeaseTimeout, match=r"waited 0.5 s for the lease .* held by host-a:17"):
            with lease.exclusive(lock, wait_s=0.5, poll_s=0.05):
                pass
        assert 0.5 <= time.monotonic() - started < 5
        with lease.exclusive(lock, wait_s=5, settle=lambda: True) as waited:
            assert waited is None  # done meanwhile: nothing to hold the lease for
    assert lease_files(lock) == []


# --- the fault: two workers reach the pair of one item at the same moment --------------------------

WORKER = r"""
import json, os, random, sys, time
from dataclasses import replace

import numpy as np
import trimesh

from align4d_core.config import PairsConfig
from align4d_core.io.manifest import read_manifest
from align4d_core.pairs import image_to_3d, item_pair, stage
from align4d_core.pipeline.runs import pair_folder

dataset, run_root, work, name, lease_s = sys.argv[1:6]


class SlowRandom:
    # a stand-in for Shap-E: slow, and a different object every time
    name = "slow-random"

    def __call__(self, rgb):
        with open(os.path.join(work, "generations"), "a") as log:
            log.write(f"{name} {os.getpid()}\n")
        time.sleep(2.0)
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=random.uniform(0.3, 0.6))
        mesh.vertices += np.random.default_rng().normal(0.0, 0.01, mesh.vertices.shape)
        return image_to_3d.Object3D(mesh=mesh)


image_to_3d.register_backend("slow-random", lambda config, device: SlowRandom())
config = PairsConfig()
config = replace(config, image_to_3d=replace(config.image_to_3d, backend="slow-random"))
stage.PAIR_LEASE_S, stage.PAIR_WAIT_S = float(lease_s), 120.0
if os.environ.get("A4D_PAIR_LEASE_BYPASS"):  # the fault without its fix: no lease at all
    import contextlib

    stage.lease.exclusive = lambda *a, **k: contextlib.nullcontext()
item = next(i for i in read_manifest(dataset) if i.id == "walk")
open(os.path.join(work, f"ready-{name}"), "w").close()
while not os.path.exists(os.path.join(work, "go")):
    time.sleep(0.01)
made = item_pair(dataset, item, pair_folder(run_root, "walk"), config, "cpu")
result = {"uris": made.pair_files(), "hashes": made.file_hashes(), "image": made.image}
with open(os.path.join(work, f"result-{name}.json"), "w") as out:
    json.dump(result, out)
"""


@pytest.fixture(scope="module")
def walk_dataset(tmp_path_factory) -> str:
    """One item that gives only a video with alpha: its pair needs a generated 3D object (and image)."""
    root = str(tmp_path_factory.mktemp("x4d"))
    frames = torch.ones(3, 32, 32, 3)
    frames[:, 8:24, 10:22] = torch.tensor([0.9, 0.5, 0.1])
    frames[1:, 8:24, 12:24] = torch.tensor([0.2, 0.6, 0.3])
    alpha = torch.zeros(3, 32, 32, 1)
    alpha[:, 8:24, 10:24] = 1.0
    write_frames(storage.join(root, "walk/video"), frames, alpha)
    write_manifest(root, [Item(id="walk", source="video", video="walk/video")])
    return root


def start_worker(work: Path, dataset: str, run_root: str, name: str, lease_s: float = 600.0) -> subprocess.Popen:
    script = work / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    args = [sys.executable, str(script), dataset, run_root, str(work), name, str(lease_s)]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> None:
    """Wait for every worker; fail with the output of one that failed; kill any left running."""
    try:
        deadline = time.monotonic() + timeout
        for proc in procs:
            output = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0].decode()
            assert proc.returncode == 0, output[-4000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def generations(work: Path) -> list[str]:
    log = work / "generations"
    return log.read_text().splitlines() if log.exists() else []


def assert_one_whole_pair(run_root: str, results: list[dict]) -> None:
    """Every result names the same files, whose content is what is in the folder now and what the
    marker records; nothing else is in the folder (no temporary file), no lease is left."""
    folder = pair_folder(run_root, "walk")
    first = results[0]
    assert all(result == first for result in results), results
    assert first["uris"]["object"] == storage.join(folder, "object.glb")
    assert {name: hash_uri(first["uris"][name]) for name in first["hashes"]} == first["hashes"]
    record = read_done(folder)
    assert record is not None and record["extra"]["uris"] == first["uris"]
    assert storage.listdir(folder) == ["done.json", "image.png", "object.glb", "pair.json"]
    assert storage.listdir(storage.join(run_root, "items", "walk")) == ["pair"]  # the lease is gone


def test_two_workers_at_once_generate_the_pair_once_and_share_it(root, walk_dataset, tmp_path):
    run_root = storage.join(root, "run")
    procs = [start_worker(tmp_path, walk_dataset, run_root, name) for name in ("a", "b")]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{name}").exists() for name in ("a", "b")):
            assert all(proc.poll() is None for proc in procs), "a worker died while starting"
            assert time.monotonic() < deadline, "the workers never got ready"
            time.sleep(0.05)
        (tmp_path / "go").touch()  # both start the pair stage now
    finally:
        finish(procs)
    results = [json.loads((tmp_path / f"result-{name}.json").read_text()) for name in ("a", "b")]
    assert len(generations(tmp_path)) == 1, f"generated by {generations(tmp_path)}; results {results}"
    assert_one_whole_pair(run_root, results)


def test_a_worker_killed_while_generating_is_taken_over_after_its_lease(root, walk_dataset, tmp_path):
    run_root = storage.join(root, "run")
    (tmp_path / "go").touch()
    killed = start_worker(tmp_path, walk_dataset, run_root, "killed", lease_s=2.0)
    sigkill_when(killed, lambda: len(generations(tmp_path)) == 1, timeout=120, what="started generating")
    lock = pair_lock(pair_folder(run_root, "walk"))
    assert lease.holder(lock)["owner"].endswith(f":{killed.pid}")  # its lease is left behind
    started = time.monotonic()
    finish([start_worker(tmp_path, walk_dataset, run_root, "next", lease_s=2.0)])
    assert time.monotonic() - started < 90
    assert [line.split()[0] for line in generations(tmp_path)] == ["killed", "next"]
    assert_one_whole_pair(run_root, [json.loads((tmp_path / "result-next.json").read_text())])
