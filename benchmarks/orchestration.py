"""What Prefect costs per item, and whether the orchestrating process's memory stays flat.

    python benchmarks/orchestration.py [--items 50] [--server local|ephemeral]

On N items (the bundled sample's five objects, repeated under new ids, at a tiny size) with a
dry-run config (2 optimisation steps at 32 px), it times, in the same process:

* the core alone: ``align4d_core.pipeline.generate`` per item (the same stages, no Prefect);
* flow ``align4d`` over the same items (tasks, cache keys, persisted results, row files, the
  aggregation and its artifacts) against a Prefect server on 127.0.0.1 (``--server local``, started
  and stopped here) or Prefect's ephemeral API (``--server ephemeral``).

It prints the per-item overhead of the flow (goal: <= 1 s with a local server) and the resident
memory of this process when item 10 and item N finish (goal: flat within 10%). Prints figures,
never asserts. Each run gets fresh output folders: nothing is cached between the two timings.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from align4d_core.config import SampleConfig, build_run_config  # noqa: E402
from align4d_core.io import storage  # noqa: E402
from align4d_core.io.manifest import MANIFEST_NAME, read_manifest  # noqa: E402
from align4d_core.pairs import item_pair  # noqa: E402
from align4d_core.pipeline.generate import generate  # noqa: E402
from align4d_core.pipeline.runs import RunSpec  # noqa: E402
from align4d_core.runtime import tune_allocator  # noqa: E402
from align4d_core.sample import write_sample  # noqa: E402

DRY_RUN = {
    "optimize": {"steps": 2, "frames_per_step": 1, "resolution_schedule": [[1.0, 32]], "checkpoint_every": 1000},
    "export": {"turntable_frames": 4},
    "search": {"probe_size": 32},
}
OVERHEAD_GOAL_S = 1.0
MEMORY_GOAL = 0.10


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_dataset(root: str, n: int) -> list[str]:
    """N manifest lines over the sample's five objects (the files are shared, the ids are not)."""
    write_sample(root, SampleConfig(frames=4, size=32, gaussians=300))
    base = [item.to_json() for item in read_manifest(root)]
    lines = [{**base[k % len(base)], "id": f"item-{k:03d}"} for k in range(n)]
    storage.write_text(storage.join(root, MANIFEST_NAME), "".join(json.dumps(line) + "\n" for line in lines))
    return [line["id"] for line in lines]


def time_core(dataset: str, out: str, limit: int | None = None) -> list[float]:
    config = build_run_config("cpu", DRY_RUN, "align4d")
    seconds = []
    for item in read_manifest(dataset)[:limit]:
        started = time.perf_counter()
        generate(item_pair(dataset, item), storage.join(out, item.id), config, device="cpu")
        seconds.append(time.perf_counter() - started)
    return seconds


def start_server() -> tuple[subprocess.Popen, str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tempfile.mkdtemp(prefix="prefect-home-")
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2):
                return proc, api, home
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("the Prefect server did not start within 180 s")


def time_flow(dataset: str, out: str, n: int) -> tuple[float, dict[int, float], list[float]]:
    """Total seconds, RSS (MiB) when item 10 and item N finished, and the gaps between item ends."""
    from flows.align4d import align4d

    spec = RunSpec(dataset, out, DRY_RUN, ("align4d",))
    rows = storage.join(spec.root, "items")
    memory: dict[int, float] = {}
    ends: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        seen = 0
        while not stop.wait(0.05):
            done = len(glob.glob(os.path.join(rows, "*", "align4d", "row.json")))  # a local folder
            if done > seen:
                ends.extend([time.perf_counter()] * (done - seen))
                seen = done
                for mark in (10, n):
                    if done >= mark and mark not in memory:
                        memory[mark] = rss_mib()

    watcher = threading.Thread(target=watch, daemon=True)
    started = time.perf_counter()
    watcher.start()
    state = align4d(dataset=dataset, out=out, settings=DRY_RUN, methods=["align4d"], return_state=True)
    total = time.perf_counter() - started
    stop.set()
    watcher.join()
    if not state.is_completed():
        raise SystemExit(f"the flow failed: {state.message}")
    return total, memory, [b - a for a, b in zip(ends, ends[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--server", choices=("local", "ephemeral"), default="local")
    args = parser.parse_args()
    tune_allocator()
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"

    server = None
    if args.server == "local":
        server, api, home = start_server()
        os.environ["PREFECT_API_URL"] = api
        os.environ["PREFECT_HOME"] = home
    try:
        with tempfile.TemporaryDirectory(prefix="align4d-orch-") as tmp:
            dataset = storage.join(tmp, "dataset")
            write_dataset(dataset, args.items)
            time_core(dataset, storage.join(tmp, "warm-up"), limit=5)  # imports, allocator, file cache
            core = time_core(dataset, storage.join(tmp, "core"))
            flow_total, memory, gaps = time_flow(dataset, storage.join(tmp, "flow"), args.items)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    n = args.items
    core_total = sum(core)
    overhead = (flow_total - core_total) / n
    print(f"orchestration: {n} items, dry-run config, Prefect API: {args.server}, torch threads {os.cpu_count()}")
    print(f"  core alone        total {core_total:7.1f} s   median per item {statistics.median(core):.3f} s")
    print(
        f"  flow align4d      total {flow_total:7.1f} s   median per item {statistics.median(gaps):.3f} s "
        f"(between item ends)"
    )
    print(
        f"  overhead per item {overhead:.3f} s (flow/core {flow_total / core_total:.2f}x); "
        f"goal <= {OVERHEAD_GOAL_S:.1f} s: {'met' if overhead <= OVERHEAD_GOAL_S else 'NOT met'}"
    )
    if 10 in memory and n in memory:
        growth = memory[n] / memory[10] - 1
        print(
            f"  RSS at item 10 {memory[10]:.0f} MiB, at item {n} {memory[n]:.0f} MiB: {growth:+.1%}; "
            f"goal within {MEMORY_GOAL:.0%}: {'met' if abs(growth) <= MEMORY_GOAL else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
