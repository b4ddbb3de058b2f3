"""The deployed path, with every real component: `prefect server start`, process work pools, the
deployments of prefect.yaml, `prefect worker start`, `prefect deployment run align4d/x4d`, and a
dataset and run folder on S3 (a moto server on 127.0.0.1).

Everything the test starts it stops, also when it fails (each process in its own group).
"""

from __future__ import annotations

import io
import json
import time

import pandas as pd
import pytest
from prefect_stack import Processes, free_port, prefect_env, wait_for_health

from align4d_core.config import SampleConfig
from align4d_core.io import storage
from align4d_core.pipeline.runs import RunSpec
from align4d_core.sample import write_sample
from tasks.common import GPU_LEASE_SECONDS

FAST = {"optimize": {"steps": 3, "frames_per_step": 2, "resolution_schedule": [[1.0, 32]]}}
ITEMS = ["twist_column", "arm_swing"]

pytestmark = pytest.mark.slow


@pytest.fixture
def deployed(request, tmp_path, s3_bucket):
    """A Prefect server with the pools, the `gpu` limit and both deployments; two workers polling.

    Parametrized indirectly with ``{"gpu_worker_limit": n}``, the gpu worker runs at most n item runs
    at once (``prefect worker start --limit n``); the others stay scheduled.
    """
    gpu_worker_limit = getattr(request, "param", {}).get("gpu_worker_limit")
    port = free_port()
    # flow runs beat every 30 s (Prefect's default is 180), as infra/README.md sets workers up
    env = prefect_env(port, tmp_path / "prefect-home", PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30")
    api = env["PREFECT_API_URL"]
    procs = Processes(tmp_path, env)
    try:
        server = procs.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        wait_for_health(api, server, procs)
        procs.run("work-pool", "create", "align4d", "--type", "process")
        procs.run("work-pool", "create", "gpu", "--type", "process")
        procs.run("gcl", "create", "gpu", "--limit", "1")
        procs.run("automation", "create", "--from-file", "infra/zombie-runs.yaml")
        procs.run("variable", "set", "align4d_out", s3_bucket)
        procs.run("--no-prompt", "deploy", "--all", timeout=300)
        procs.start("worker-align4d", "worker", "start", "--pool", "align4d", "--type", "process")
        limit = ["--limit", str(gpu_worker_limit)] if gpu_worker_limit else []
        procs.start("worker-gpu", "worker", "start", "--pool", "gpu", "--type", "process", *limit)
        yield procs, api, s3_bucket
    finally:
        procs.stop()


def test_deployment_run_x4d_fans_out_to_the_gpu_pool_and_writes_the_tables_to_s3(deployed, tmp_path):
    procs, api, out = deployed
    dataset = storage.join(out, "dataset")
    write_sample(dataset, SampleConfig(frames=4, size=48, gaussians=600, items=tuple(ITEMS)))
    params = {"dataset": dataset, "settings": FAST, "methods": ["align4d"]}
    printed = procs.run(
        "deployment",
        "run",
        "align4d/x4d",
        "--params",
        json.dumps(params),
        "--watch",
        "--watch-interval",
        "2",
        "--watch-timeout",
        "900",
        timeout=960,
    )
    assert "Completed" in printed, printed + procs.logs()

    spec = RunSpec(dataset, out, FAST, ("align4d",))  # `out` came from the Prefect variable
    with storage.local_copy(storage.join(spec.root, "tables", "results.csv")) as local:
        table = pd.read_csv(local)
    assert sorted(table["item"]) == sorted(ITEMS)
    assert (table["status"] == "completed").all(), table.to_dict(orient="records")
    assert table["psnr"].gt(10).all() and table["ssim"].between(0, 1).all()
    assert storage.exists(storage.join(spec.root, "tables", "summary.md"))

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        item_runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["x4d-item"]))
        )
    assert sorted(r.name for r in item_runs) == sorted(f"{i}-align4d" for i in ITEMS)  # each one a GPU-pool job
    assert all(r.state.is_completed() for r in item_runs)


# Items that never finish within the test: many optimisation steps on a tiny object, no checkpoints.
SLOW = {
    "optimize": {
        "steps": 100000,
        "frames_per_step": 1,
        "resolution_schedule": [[1.0, 32]],
        "checkpoint_every": 100000,
    }
}
CANCEL_ITEMS = ["twist_column", "arm_swing", "pulsing_blob"]


def poll(condition, timeout: float, what: str, describe) -> object:
    """``condition()`` until it returns something truthy (returned) or ``timeout`` s pass (an AssertionError)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if found := condition():
            return found
        time.sleep(1)
    raise AssertionError(f"not within {timeout:.0f} s: {what}\n{describe()}")


@pytest.mark.parametrize("deployed", [{"gpu_worker_limit": 2}], indirect=True)
def test_cancelling_x4d_cancels_its_queued_and_running_item_runs_and_frees_the_gpu_slot(deployed):
    """`prefect flow-run cancel` on x4d while item runs hold the gpu slot, wait for it and wait in the queue.

    With the gpu worker limited to two runs and the `gpu` limit to one slot, three items give one run
    in a GPU stage (holding the slot), one running but waiting for the slot, and one still scheduled.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Cancelling

    procs, api, out = deployed
    dataset = storage.join(out, "dataset")
    write_sample(dataset, SampleConfig(frames=4, size=48, gaussians=300, items=tuple(CANCEL_ITEMS)))
    params = {"dataset": dataset, "out": out, "settings": SLOW, "methods": ["align4d"]}

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("align4d/x4d")
        parent = client.create_flow_run_from_deployment(deployment.id, parameters=params)
        children_filter = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id]))

        def children() -> list:
            return client.read_flow_runs(flow_run_filter=children_filter)

        def gpu_slots() -> int:
            return client.read_global_concurrency_limit_by_name("gpu").active_slots

        def describe() -> str:
            states = [f"{r.name}: {r.state_name} ({r.state.message if r.state else ''})" for r in children()]
            parent_state = client.read_flow_run(parent.id).state
            return f"parent: {parent_state}\nchildren: {states}\ngpu slots: {gpu_slots()}\n{procs.logs()}"

        def busy() -> bool:
            runs = children()
            return (
                len(runs) == len(CANCEL_ITEMS)
                and gpu_slots() == 1
                and any(r.state.is_running() for r in runs)
                and any(r.state.is_scheduled() or r.state.is_pending() for r in runs)
            )

        poll(busy, 180, "an item run holds the gpu slot while another is queued", describe)
        before = {r.id: r.state_name for r in children()}
        cancelled_at = time.time()
        client.set_flow_run_state(parent.id, Cancelling(message="cancelled by the test"))  # `prefect flow-run cancel`

        def all_cancelled() -> bool:
            runs = children()
            return (
                client.read_flow_run(parent.id).state.is_cancelled()
                and all(r.state.is_cancelled() for r in runs)
                and gpu_slots() == 0
            )

        # A slot whose holder died before releasing it comes back when its lease expires (GPU_LEASE_SECONDS)
        wait = 30 + GPU_LEASE_SECONDS + 30
        poll(all_cancelled, wait, f"the parent, every item run (were {before}) cancelled, no gpu slot taken", describe)
        print(f"cancelled everything {time.time() - cancelled_at:.1f} s after the cancel; item runs were {before}")
        time.sleep(5)  # nothing comes back: no item run restarts, no slot is taken again
        assert all(r.state.is_cancelled() for r in children()) and gpu_slots() == 0, describe()


# An item long enough to be killed between its checkpoints: 60 steps, a checkpoint every 10.
KILLED_ITEM = "arm_swing"
RESUMABLE = {
    "optimize": {"steps": 60, "frames_per_step": 1, "resolution_schedule": [[1.0, 32]], "checkpoint_every": 10}
}


def test_a_gpu_worker_killed_mid_optimisation_is_detected_and_a_rerun_resumes_to_the_same_tables(deployed):
    """The GPU worker and its item's flow process are SIGKILLed together mid-optimisation, as when a
    machine is lost or a pod is OOM-killed: nothing is left to report the run's end.

    Detection is Prefect's own zombie handling, set up as infra/README.md says: the flow run's
    heartbeats (every 30 s) stop, and the automation of infra/zombie-runs.yaml marks the run Crashed
    90 s after the last one. Without that automation the item run stays Running and x4d waits on it
    for ever (this test then fails at the first poll). The x4d run ends with a failed row; x4d run
    again with the same parameters on a new worker resumes the item from its checkpoint, and its
    tables equal those of a run that was never interrupted.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_stack import sigkill_tree

    from align4d_core.pipeline.runs import item_folder

    procs, api, out = deployed
    dataset = storage.join(out, "dataset")
    write_sample(dataset, SampleConfig(frames=4, size=48, gaussians=300, items=(KILLED_ITEM,)))
    params = {"dataset": dataset, "out": out, "settings": RESUMABLE, "methods": ["align4d"]}
    spec = RunSpec(dataset, out, RESUMABLE, ("align4d",))
    item = item_folder(spec.root, KILLED_ITEM, "align4d")

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        x4d = client.read_deployment_by_name("align4d/x4d")

        def start_x4d(parameters: dict):
            run = client.create_flow_run_from_deployment(x4d.id, parameters=parameters)
            children = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
            return run, lambda: client.read_flow_runs(flow_run_filter=children)

        def ended(run_id) -> bool:
            return client.read_flow_run(run_id).state.is_final()

        first, first_children = start_x4d(params)

        def describe() -> str:
            states = [f"{r.name}: {r.state_name} ({r.state.message if r.state else ''})" for r in first_children()]
            return f"x4d: {client.read_flow_run(first.id).state}\nitem runs: {states}\n{procs.logs()}"

        poll(lambda: storage.exists(storage.join(item, "checkpoints", "latest.json")), 300, "a checkpoint", describe)
        (item_run,) = first_children()
        assert item_run.state.is_running(), describe()
        worker = next(proc for name, proc, _ in procs.started if name == "worker-gpu")
        assert len(sigkill_tree(worker)) >= 2, "the worker and the item's flow process"
        killed_at = time.time()

        crashed = lambda: client.read_flow_run(item_run.id).state.is_crashed()
        poll(crashed, 90 + 90, "the killed item run marked Crashed (zombie detection)", describe)
        detected = time.time() - killed_at
        poll(lambda: ended(first.id), 120, "x4d ended after its item crashed", describe)
        assert client.read_flow_run(first.id).state.is_failed(), describe()  # one failed row, not a hang
        assert not storage.exists(storage.join(item, "stages", "optimize", "done.json"))

        procs.start("worker-gpu-2", "worker", "start", "--pool", "gpu", "--type", "process")
        second, _ = start_x4d(params)
        poll(lambda: ended(second.id), 600, "x4d run again completed", describe)
        assert client.read_flow_run(second.id).state.is_completed(), describe()

        reference_out = storage.join(out, "uninterrupted")
        third, _ = start_x4d({**params, "out": reference_out})
        poll(lambda: ended(third.id), 600, "the uninterrupted x4d completed", describe)
        assert client.read_flow_run(third.id).state.is_completed(), describe()
    print(f"the killed item run was marked Crashed {detected:.0f} s after the kill")

    done = storage.read_json(storage.join(item, "stages", "optimize", "done.json"))
    assert done["extra"]["resumed_from"] is not None and done["extra"]["resumed_from"] >= 10, done
    resumed, straight = (
        pd.read_csv(io.StringIO(storage.read_text(storage.join(root, "tables", "results.csv"))))
        for root in (spec.root, RunSpec(dataset, reference_out, RESUMABLE, ("align4d",)).root)
    )
    for column in ("item", "method", "status", "vaod", "maod", "gaussians"):
        assert list(resumed[column]) == list(straight[column]), column
    pd.testing.assert_series_equal(resumed["psnr"], straight["psnr"], rtol=1e-4)
    pd.testing.assert_series_equal(resumed["ssim"], straight["ssim"], rtol=1e-4)
