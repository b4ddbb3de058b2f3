"""The fleet path in containers: docker/Dockerfile.gpu-worker built and run by a Prefect Docker work
pool made from infra/docker-gpu.json, as an operator runs it (infra/README.md).

A Docker daemon started here (tests/dockerd.py: no bridge network, host networking only), the
worker image built on a CPU base made from Debian packages (docker/cpu-base.sh; no registry can be
pulled here), `prefect server start`, a process pool for the orchestrating flow, a Docker pool for
`x4d-item` served by `prefect worker start --type docker`, and a moto S3 on 127.0.0.1. `x4d` fans
out; the item run executes inside a container of the image and its row and the tables land in S3.

The base image and the dependency layers stay in the daemon's data root between runs (tests/dockerd.py),
so a second run on one machine rebuilds only the layers holding align4d's own code.
"""

from __future__ import annotations

import json
import os
import subprocess

import pandas as pd
import pytest
from dockerd import docker_daemon, missing_tools
from prefect_stack import ROOT, Processes, free_port, prefect_env, wait_for_health

from align4d_core.config import SampleConfig
from align4d_core.io import storage
from align4d_core.pipeline.runs import RunSpec
from align4d_core.sample import write_sample

pytestmark = pytest.mark.slow

IMAGE = "align4d/gpu-worker:ci-cpu"
FAST = {"optimize": {"steps": 3, "frames_per_step": 2, "resolution_schedule": [[1.0, 32]]}}
ITEM = "twist_column"


def build_worker_image(env: dict[str, str], folder) -> None:
    """docker/cpu-base.sh, then the worker image on it, as the Dockerfile's header says."""
    base = subprocess.run(
        ["sh", "docker/cpu-base.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert base.returncode == 0, f"docker/cpu-base.sh:\n{base.stdout[-3000:]}\n{base.stderr[-3000:]}"
    log = folder / "docker-build.log"
    with open(log, "wb") as out:
        built = subprocess.run(
            [
                *("docker", "build", "--network", "host", "-f", "docker/Dockerfile.gpu-worker", "-t", IMAGE),
                *("--build-arg", f"BASE_IMAGE={base.stdout.split()[-1]}", "--build-arg", "GSPLAT_KERNELS=none", "."),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1200,
            check=False,
        )
    assert built.returncode == 0, log.read_text(errors="replace")[-4000:]
    # the image of the previous run, now untagged: the cache keeps its layers, not a copy per run
    subprocess.run(["docker", "image", "prune", "--force"], env=env, capture_output=True, timeout=300, check=False)


def docker_pool_template(s3_endpoint: str) -> dict:
    """infra/docker-gpu.json with the defaults an operator sets for this host (infra/README.md):
    the image's tag, never pulled, host networking, no GPU request (this host has no NVIDIA
    runtime) and the S3 endpoint and credentials in the container's environment."""
    template = json.loads((ROOT / "infra" / "docker-gpu.json").read_text())
    variables = template["variables"]["properties"]
    variables["image"]["default"] = IMAGE
    variables["image_pull_policy"]["default"] = "Never"
    variables["network_mode"]["default"] = "host"
    variables["device_requests"]["default"] = []
    variables["shm_size"]["default"] = "256m"
    variables["env"]["default"] = {
        "FSSPEC_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "OMP_NUM_THREADS": "1",
    }
    return template


def test_x4d_item_runs_in_the_worker_image_on_a_docker_pool_and_the_tables_land_in_s3(tmp_path, s3_server, s3_bucket):
    if os.geteuid() != 0:
        pytest.skip("dockerd and debootstrap need root")
    missing = missing_tools()
    assert not missing, f"missing {missing}: scripts/system-packages.sh installs docker.io and debootstrap"

    with docker_daemon(tmp_path) as docker_env:
        build_worker_image(docker_env, tmp_path)

        port = free_port()
        env = prefect_env(port, tmp_path / "prefect-home", DOCKER_HOST=docker_env["DOCKER_HOST"])
        api = env["PREFECT_API_URL"]
        procs = Processes(tmp_path, env)
        try:
            server = procs.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
            wait_for_health(api, server, procs)
            template = tmp_path / "docker-gpu.json"
            template.write_text(json.dumps(docker_pool_template(s3_server)))
            procs.run("work-pool", "create", "align4d", "--type", "process")
            procs.run("work-pool", "create", "gpu", "--type", "docker", "--base-job-template", str(template))
            procs.run("gcl", "create", "gpu", "--limit", "1")
            procs.run("variable", "set", "align4d_out", s3_bucket)
            procs.run("--no-prompt", "deploy", "--all", timeout=300)
            procs.start("worker-align4d", "worker", "start", "--pool", "align4d", "--type", "process")
            procs.start("worker-docker", "worker", "start", "--pool", "gpu", "--type", "docker")

            dataset = storage.join(s3_bucket, "dataset")
            write_sample(dataset, SampleConfig(frames=4, size=48, gaussians=600, items=(ITEM,)))
            params = {"dataset": dataset, "settings": FAST, "methods": ["align4d"]}
            printed = procs.run(
                *("deployment", "run", "align4d/x4d", "--params", json.dumps(params)),
                *("--watch", "--watch-interval", "2", "--watch-timeout", "900"),
                timeout=960,
            )
            assert "Completed" in printed, printed + procs.logs()

            from prefect.client.orchestration import get_client
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
                (item_run,) = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["x4d-item"]))
                )
                pool = client.read_work_pool("gpu")
                slots = client.read_global_concurrency_limit_by_name("gpu").active_slots
            assert pool.type == "docker"
            assert item_run.state.is_completed(), item_run.state
            # the Docker worker records the container it ran the flow in: "<docker host>:<container id>"
            container_id = (item_run.infrastructure_pid or "").rsplit(":", 1)[-1]
            assert len(container_id) == 64 and int(container_id, 16) >= 0, item_run.infrastructure_pid
            worker_log = (tmp_path / "worker-docker.log").read_text(errors="replace")
            assert "Creating Docker container" in worker_log, worker_log[-3000:]
            assert slots == 0  # the GPU stages inside the container released the `gpu` slot
        finally:
            procs.stop()

    spec = RunSpec(dataset, s3_bucket, FAST, ("align4d",))
    with storage.local_copy(storage.join(spec.root, "tables", "results.csv")) as local:
        table = pd.read_csv(local)
    assert list(table["item"]) == [ITEM]
    assert (table["status"] == "completed").all(), table.to_dict(orient="records")
    assert table["psnr"].gt(10).all()
    assert storage.exists(storage.join(spec.root, "tables", "summary.md"))
