"""Shared fixtures: storage roots on every backend, including a real S3 server on loopback.

S3 is tested against moto in server mode (DESIGN.md §2), reached the way s3fs users reach an
endpoint: ``FSSPEC_S3_ENDPOINT_URL`` and the ``AWS_*`` variables. fsspec reads ``FSSPEC_*`` only at
import time, so the fixture also updates ``fsspec.config.conf`` and clears s3fs's instance cache.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

TEST_BUCKET = "align4d-test"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with bucket ``TEST_BUCKET``; yields its endpoint URL."""
    fsspec = pytest.importorskip("fsspec")
    s3fs = pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    drop = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SECURITY_TOKEN")
    saved_env = {k: os.environ.get(k) for k in (*env, *drop)}
    saved_conf = fsspec.config.conf.get("s3")
    os.environ.update(env)
    for key in drop:
        os.environ.pop(key, None)
    fsspec.config.conf["s3"] = {**(saved_conf or {}), "endpoint_url": endpoint}
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        fsspec.filesystem("s3").mkdir(TEST_BUCKET)
        yield endpoint
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        if saved_conf is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = saved_conf
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str) -> Iterator[str]:
    """A fresh, empty ``s3://<bucket>/prefix-<uuid>`` for one test, removed afterwards."""
    from align4d_core.io import storage

    root = f"s3://{TEST_BUCKET}/prefix-{uuid.uuid4().hex}"
    yield root
    storage.remove(root, recursive=True)


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A fresh ``memory://`` root for one test, removed afterwards."""
    from align4d_core.io import storage

    root = f"memory://align4d-{uuid.uuid4().hex}"
    yield root
    storage.remove(root, recursive=True)


@pytest.fixture(params=["file", "plain", "memory", "s3"])
def any_root(request: pytest.FixtureRequest, tmp_path) -> str:
    """The same test on every storage backend: file:// URI, plain path, memory:// and s3://."""
    if request.param == "file":
        return (tmp_path / "root").as_uri()
    if request.param == "plain":
        return str(tmp_path / "root")
    if request.param == "memory":
        return request.getfixturevalue("memory_root")
    return request.getfixturevalue("s3_bucket")  # starts the S3 server only when needed


# --- Prefect -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def harness() -> Iterator[str]:
    """Prefect's test harness (a temporary server and database) for the session; yields its API URL."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")  # tasks run alone in tests
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


# --- models built from configs, loaded offline --------------------------------------------------


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: tiny models gain nothing from two, and lose much on a shared CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def offline_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The Hugging Face hub offline with an empty private cache (yielded): every load is local or fails fast."""
    import huggingface_hub.constants

    cache = tmp_path_factory.mktemp("hf-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
        yield cache


# --- the bundled sample, written once per session ------------------------------------------------


@pytest.fixture(scope="session")
def small_sample_config():
    """A sample config small enough for many tests: 4 frames, 48 px, 600 Gaussians per object."""
    from align4d_core.config import SampleConfig

    return SampleConfig(frames=4, size=48, gaussians=600)


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory: pytest.TempPathFactory, small_sample_config) -> str:
    """A local sample dataset of every item at the small config; tests must not modify it."""
    from align4d_core.sample import write_sample

    root = str(tmp_path_factory.mktemp("small-sample") / "sample")
    write_sample(root, small_sample_config)
    return root


@pytest.fixture(scope="session")
def default_sample(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The default sample (``align4d sample DIR`` with no options); tests must not modify it."""
    from align4d_core.config import SampleConfig
    from align4d_core.sample import write_sample

    root = str(tmp_path_factory.mktemp("default-sample") / "sample")
    write_sample(root, SampleConfig())
    return root
