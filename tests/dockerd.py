"""A Docker daemon for the tests that build and run the worker image, started and stopped by them.

It runs without any bridge network or iptables rules (``--bridge=none --iptables=false``), so
containers have the host's network only and every connection stays on 127.0.0.1. Its images and
build cache live in a folder that outlives the test (``ALIGN4D_DOCKER_ROOT``, by default
``~/.cache/align4d/docker``): CI runs on one machine reuse the base image and the dependency layers
instead of rebuilding them; its sockets and runtime state live in the test's own temporary folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATA_ROOT = Path(os.environ.get("ALIGN4D_DOCKER_ROOT", Path.home() / ".cache" / "align4d" / "docker"))


def missing_tools() -> list[str]:
    """What this machine lacks to start a daemon and build the CPU base image."""
    needed = ["dockerd", "docker", "debootstrap"]
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root (dockerd and debootstrap need it)")
    return missing


@contextmanager
def docker_daemon(folder: Path, timeout: float = 60) -> Iterator[dict[str, str]]:
    """Start ``dockerd``; yield the environment that points the docker CLI and docker-py at it."""
    # a UNIX socket path must be short (108 bytes): pytest's tmp_path can be longer than that
    run = Path(f"/tmp/align4d-dockerd-{os.getpid()}")
    run.mkdir(exist_ok=True)
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    socket = run / "docker.sock"
    log = open(folder / "dockerd.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        [
            "dockerd",
            "--data-root",
            str(DATA_ROOT),
            "--exec-root",
            str(run / "exec"),
            "--pidfile",
            str(run / "docker.pid"),
            "--host",
            f"unix://{socket}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket}", "DOCKER_BUILDKIT": "0"}
    try:
        deadline = time.time() + timeout
        while True:
            assert daemon.poll() is None, (folder / "dockerd.log").read_text(errors="replace")[-3000:]
            ready = subprocess.run(["docker", "version"], env=env, capture_output=True, check=False)
            if ready.returncode == 0:
                break
            assert time.time() < deadline, f"dockerd did not answer within {timeout} s"
            time.sleep(0.5)
        yield env
    finally:
        if daemon.poll() is None:
            daemon.terminate()  # dockerd stops its containers, then the containerd it started
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        try:
            os.killpg(daemon.pid, signal.SIGKILL)  # anything of its group still there
        except ProcessLookupError:
            pass
        log.close()
        _unmount_below(run)  # dockerd leaves its default network namespace mounted in the exec root
        shutil.rmtree(run, ignore_errors=True)


def _unmount_below(folder: Path) -> None:
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{folder}/")]
    for point in sorted(points, key=len, reverse=True):  # the deepest first
        subprocess.run(["umount", point], capture_output=True, check=False)
