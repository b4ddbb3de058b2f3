"""prefect.yaml, infra/ and docker/: they parse, and everything they name exists and fits together.

The deployed path itself runs in test_deployed.py; these checks are the ones that need no server:
entrypoints load as the flows the code dispatches to, parameters exist on those flows, the work-pool
templates pass Prefect's own validation and resolve to real GPU requests, and the image copies
files that exist.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict]:
    return {d["name"]: d for d in load_yaml("prefect.yaml")["deployments"]}


def test_prefect_yaml_has_the_benchmark_and_the_gpu_item_deployments(deployments):
    from prefect.flows import load_flow_from_entrypoint

    from flows.align4d import ITEM_DEPLOYMENT

    assert set(deployments) == {"x4d", "x4d-item"}
    x4d = load_flow_from_entrypoint(deployments["x4d"]["entrypoint"])
    item = load_flow_from_entrypoint(deployments["x4d-item"]["entrypoint"])
    assert x4d.name == "align4d" and item.name == "align4d-item"
    assert ITEM_DEPLOYMENT == f"{item.name}/x4d-item"  # what x4d dispatches to exists
    assert deployments["x4d-item"]["work_pool"]["name"] == "gpu"


def test_the_default_parameters_are_parameters_of_the_flow(deployments):
    from prefect.flows import load_flow_from_entrypoint

    from align4d_core.config import PRESETS

    x4d = deployments["x4d"]
    accepted = inspect.signature(load_flow_from_entrypoint(x4d["entrypoint"]).fn).parameters
    params = x4d["parameters"]
    assert set(params) <= set(accepted)
    assert params["dispatch"] == "deployment"
    assert sorted(params["methods"]) == sorted(PRESETS)
    assert params["out"] == "{{ prefect.variables.align4d_out }}"  # object storage the operator sets


def test_the_weekly_schedule_is_a_valid_cron(deployments):
    from prefect.client.schemas.schedules import CronSchedule

    (schedule,) = deployments["x4d"]["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    fields = cron.cron.split()
    assert fields[2] == "*" and fields[3] == "*" and fields[4] != "*"  # one weekday: weekly


@pytest.mark.parametrize("name", ["docker-gpu.json", "kubernetes-gpu.json"])
def test_work_pool_templates_pass_prefects_validation(name):
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.utilities.schema_tools import validate

    template = json.loads((ROOT / "infra" / name).read_text())
    pool = WorkPoolCreate(name="gpu", type=name.split("-")[0], base_job_template=template)
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    validate(defaults, template["variables"], raise_on_error=True, preprocess=True, ignore_required=True)
    assert pool.base_job_template == template


def resolved(name: str, **overrides) -> dict:
    """The job configuration a worker would get, with the template's defaults filled in."""
    from prefect.utilities.templating import apply_values

    template = json.loads((ROOT / "infra" / name).read_text())
    values = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    return apply_values(template["job_configuration"], {**values, **overrides})


def test_the_kubernetes_template_asks_for_a_gpu():
    job = resolved("kubernetes-gpu.json", image="align4d/gpu-worker:test")
    container = job["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["envFrom"][0]["secretRef"]["name"] == "align4d-s3"
    assert container["image"] == "align4d/gpu-worker:test"


def test_the_docker_template_asks_for_a_gpu_in_a_form_docker_py_accepts():
    from docker.types import HostConfig

    job = resolved("docker-gpu.json")
    kwargs = job["container_create_kwargs"]
    (request,) = kwargs["device_requests"]
    assert request == {"driver": "nvidia", "count": 1, "capabilities": [["gpu"]]}
    config = HostConfig(version="1.41", device_requests=kwargs["device_requests"], shm_size=kwargs["shm_size"])
    assert config["DeviceRequests"][0]["Count"] == 1 and config["DeviceRequests"][0]["Capabilities"] == [["gpu"]]
    assert "FSSPEC_S3_ENDPOINT_URL" in job["env"]


def test_the_gpu_image_copies_files_that_exist_and_are_not_docker_ignored():
    dockerfile = (ROOT / "docker" / "Dockerfile.gpu-worker").read_text()
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = [src for line in dockerfile.splitlines() if line.startswith("COPY ") for src in line.split()[1:-1]]
    assert {"align4d_core", "tasks", "flows", "prefect.yaml", "pyproject.toml"} <= set(copied)
    for src in copied:
        assert (ROOT / src).exists(), src
        assert src not in ignored, src
    assert re.search(r"importlib.import_module\('gsplat.csrc'\)", dockerfile)  # the build fails without kernels


def test_compose_runs_the_pools_and_deployments_of_prefect_yaml(deployments):
    compose = load_yaml("docker/compose.yaml")
    services = compose["services"]
    assert {"prefect-server", "s3", "setup", "orchestrator", "gpu-worker"} <= set(services)
    build = services["setup"]["build"]
    assert (ROOT / "docker" / build["context"] / build["dockerfile"]).resolve().is_file()
    pools = {d["work_pool"]["name"] for d in deployments.values()}
    commands = [s.get("command") for s in services.values()]
    started = {c[c.index("--pool") + 1] for c in commands if isinstance(c, list) and "worker" in c}
    assert started == pools
    setup = "\n".join(services["setup"]["command"])
    for pool in pools:
        assert f"work-pool create {pool}" in setup
    assert "gcl create gpu" in setup and "variable set align4d_out" in setup and "deploy --all" in setup
    gpu = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]


def test_infra_readme_names_the_files_and_pools_that_exist(deployments):
    readme = (ROOT / "infra" / "README.md").read_text()
    for path in re.findall(r"(?:infra|docker)/[\w.-]+\.(?:json|yaml|gpu-worker)", readme):
        assert (ROOT / path).exists(), path
    for pool in {d["work_pool"]["name"] for d in deployments.values()}:
        assert f"--pool {pool}" in readme
    assert "## Scaling" in readme
