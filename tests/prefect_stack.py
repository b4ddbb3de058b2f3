"""A Prefect stack for tests and benchmarks: `prefect server start`, workers and CLI calls as real
processes, each in its own process group with its log in a folder, all stopped together (SIGTERM,
then SIGKILL), also when a test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]


def prefect_env(port: int, home: Path, **extra: str) -> dict[str, str]:
    """The environment of every Prefect process of one stack: its own server, home and no prompts."""
    env = {
        **os.environ,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_CLI_PROMPT": "false",
        "OMP_NUM_THREADS": "1",
        **extra,
    }
    env.pop("PREFECT_PROFILES_PATH", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Background processes with their logs, stopped together (SIGTERM, then SIGKILL)."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder, self.env, self.started = folder, env, []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            [*PREFECT, *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append((name, proc, log))
        return proc

    def run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [*PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.folder / f'{name}.log').read_text(errors='replace')[-2500:]}"
            for name, _, _ in self.started
        )

    def stop(self) -> None:
        for _, proc, _ in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.time() + 20
        for _, proc, log in reversed(self.started):
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def wait_for_health(url: str, server: subprocess.Popen, procs: Processes, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert server.poll() is None, procs.logs()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the Prefect server did not answer within {timeout} s\n{procs.logs()}")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, theirs, ...), read from /proc: process workers start
    flow runs in sessions of their own, so the worker's process group does not hold them."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    # the command name may hold spaces and parentheses: the ppid follows the last ')'
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def sigkill_tree(proc: subprocess.Popen) -> list[int]:
    """SIGKILL ``proc`` and everything below it at once, as a machine that is lost; returns the pids."""
    pids = [proc.pid, *descendants(proc.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    return pids
