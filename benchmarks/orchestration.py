"""What Prefect costs per item, and whether the orchestrating process's memory stays flat.

    python benchmarks/orchestration.py [--items 50] [--server local|ephemeral]
    python benchmarks/orchestration.py --deployed [--items 200] [--gpu-workers 2]

On N items (the bundled sample's five objects, repeated under new ids, at a tiny size) with a
dry-run config (2 optimisation steps at 32 px), it times, in the same process:

* the core alone: ``align4d_core.pipeline.generate`` per item (the same stages, no Prefect);
* flow ``align4d`` over the same items (tasks, cache keys, persisted results, row files, the
  aggregation and its artifacts) against a Prefect server on 127.0.0.1 (``--server local``, started
  and stopped here) or Prefect's ephemeral API (``--server ephemeral``).

It prints the per-item overhead of the flow (goal: <= 1 s with a local server) and the resident
memory of this process when item 10 and item N finish (goal: flat within 10%). Prints figures,
never asserts. Each run gets fresh output folders: nothing is cached between the two timings.

``--deployed`` is the fleet under load instead (issue 15): a local Prefect server, the work pools,
the `gpu` limit, the zombie automation and both deployments as infra/README.md sets them up, one
orchestrating worker and ``--gpu-workers`` process workers (``--limit 1`` each), and the dataset and
run folder on S3 (a moto server on 127.0.0.1). One `x4d` run over N dry-run items; it prints items
per minute, the resident memory of the server and of each worker (with what they started) at the
start and the end, the failed item runs (goal: none) and the `gpu` slots still taken at the end
(goal: none).
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
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))  # prefect_stack

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


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and every process below it (a worker and the flow runs it started)."""
    from prefect_stack import descendants

    total = 0.0
    for each in (pid, *descendants(pid)):
        try:
            with open(f"/proc/{each}/status") as handle:
                total += next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024
        except (OSError, StopIteration):
            continue
    return total


def deployed(n: int, gpu_workers: int, max_minutes: float | None = None) -> None:
    """One x4d run of ``n`` dry-run items through a local server, process workers and S3 on moto."""
    import logging

    from moto.server import ThreadedMotoServer
    from prefect_stack import Processes, free_port, prefect_env, wait_for_health

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log: a line per request
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, s3_port = s3.get_host_and_port()
    credentials = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update({**credentials, "FSSPEC_S3_ENDPOINT_URL": f"http://{host}:{s3_port}"})
    import fsspec

    fsspec.config.conf.setdefault("s3", {})["endpoint_url"] = os.environ["FSSPEC_S3_ENDPOINT_URL"]
    fs, _ = storage.filesystem("s3://align4d-bench")
    fs.mkdir("align4d-bench")
    out = "s3://align4d-bench/runs"

    folder = tempfile.mkdtemp(prefix="align4d-load-")
    port = free_port()
    env = prefect_env(
        port,
        os.path.join(folder, "prefect-home"),
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    procs = Processes(Path(folder), env)
    try:
        server = procs.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        wait_for_health(env["PREFECT_API_URL"], server, procs)
        procs.run("work-pool", "create", "align4d", "--type", "process")
        procs.run("work-pool", "create", "gpu", "--type", "process")
        procs.run("gcl", "create", "gpu", "--limit", str(gpu_workers))
        procs.run("automation", "create", "--from-file", "infra/zombie-runs.yaml")
        procs.run("variable", "set", "align4d_out", out)
        procs.run("--no-prompt", "deploy", "--all", timeout=300)
        orchestrator = procs.start("worker-align4d", "worker", "start", "--pool", "align4d", "--type", "process")
        workers = [
            procs.start(f"worker-gpu-{k}", "worker", "start", "--pool", "gpu", "--type", "process", "--limit", "1")
            for k in range(gpu_workers)
        ]
        dataset = storage.join(out, "dataset")
        write_dataset(dataset, n)
        time.sleep(10)  # the workers are up and polling
        watched = {
            "server": server,
            "orchestrator": orchestrator,
            **{f"gpu worker {k}": w for k, w in enumerate(workers)},
        }
        before = {name: tree_rss_mib(proc.pid) for name, proc in watched.items()}

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
            x4d = client.read_deployment_by_name("align4d/x4d")
            params = {"dataset": dataset, "out": out, "settings": DRY_RUN, "methods": ["align4d"]}
            started = time.perf_counter()
            run = client.create_flow_run_from_deployment(x4d.id, parameters=params)
            peak = dict(before)
            items = DeploymentFilter(name=DeploymentFilterName(any_=["x4d-item"]))

            def item_runs() -> list:  # the API answers at most 200 runs a call
                runs: list = []
                while page := client.read_flow_runs(deployment_filter=items, limit=200, offset=len(runs)):
                    runs += page
                return runs

            last_print = 0.0
            stopped = False
            while not (state := client.read_flow_run(run.id).state).is_final():
                if max_minutes and not stopped and time.perf_counter() - started > max_minutes * 60:
                    from prefect.states import Cancelling

                    print(f"  stopping after {max_minutes:g} min: x4d cancelled (its item runs with it)", flush=True)
                    client.set_flow_run_state(run.id, Cancelling(message="benchmark time limit"))
                    stopped = True
                for name, proc in watched.items():
                    peak[name] = max(peak[name], tree_rss_mib(proc.pid))
                if time.perf_counter() - last_print > 60:
                    children = item_runs()
                    ended = sum(r.state.is_final() for r in children)
                    print(f"  {time.perf_counter() - started:6.0f} s: {ended} of {n} item runs ended", flush=True)
                    last_print = time.perf_counter()
                time.sleep(2)
            seconds = time.perf_counter() - started
            time.sleep(5)
            after = {name: tree_rss_mib(proc.pid) for name, proc in watched.items()}
            children = item_runs()
            completed = sum(r.state.is_completed() for r in children)
            failed = [
                f"{r.name}: {r.state_name} ({r.state.message})"
                for r in children
                if not r.state.is_completed() and not (stopped and r.state.type.value in ("CANCELLED", "CANCELLING"))
            ]
            slots = client.read_global_concurrency_limit_by_name("gpu").active_slots
    finally:
        procs.stop()
        s3.stop()

    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"orchestration, deployed: {n} dry-run items, {gpu_workers} process GPU workers, local server, S3 on moto")
    if stopped:
        print(f"  stopped at the time limit: {completed} of {n} item runs completed, the rest cancelled")
    print(f"  x4d {state.name} in {seconds:.1f} s: {completed / seconds * 60:.2f} item runs completed per minute")
    print(
        f"  item runs: {len(children)}, failed: {len(failed)} (goal: none){''.join(chr(10) + '    ' + f for f in failed[:10])}"
    )
    print(
        f"  gpu slots taken at the end: {slots} (goal: 0; 5 s after x4d ended: a cancelled holder's lease lapses in 60 s)"
    )
    print("  resident memory (MiB, with the processes each started): start / peak / end")
    for name in before:
        print(f"    {name:14s} {before[name]:7.0f} / {peak[name]:7.0f} / {after[name]:7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=None, help="50 (in-process) or 200 (--deployed)")
    parser.add_argument("--server", choices=("local", "ephemeral"), default="local")
    parser.add_argument("--deployed", action="store_true", help="the fleet under load (see above)")
    parser.add_argument("--gpu-workers", type=int, default=2)
    parser.add_argument("--max-minutes", type=float, default=None, help="--deployed: cancel x4d after this long")
    args = parser.parse_args()
    if args.deployed:
        for stop in (signal.SIGINT, signal.SIGTERM):  # stop the server and workers on the way out
            signal.signal(stop, lambda number, _: sys.exit(128 + number))
        deployed(args.items or 200, args.gpu_workers, args.max_minutes)
        return
    args.items = args.items or 50
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
