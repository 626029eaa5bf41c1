"""Starts real trainyard nodes for the tests: the binary from `TRAINYARD_BIN` (default: the
repository's debug build), on the embedded store and on a real `redis-server`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
TOKEN = "python-client-token-0123456789"


def binary() -> str:
    if os.environ.get("TRAINYARD_BIN"):
        return os.environ["TRAINYARD_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return str(target / "debug" / "trainyard")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


class RunningNode:
    def __init__(self, store: str, env: Optional[dict[str, str]] = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="trainyard-py-"))
        self.redis: Optional[subprocess.Popen] = None
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        full_env = {**os.environ, "RUST_LOG": "warn"}
        if store == "redis":
            redis_port = free_port()
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir)],
                stdout=subprocess.DEVNULL,
            )
            wait_until(lambda: socket.create_connection(("127.0.0.1", redis_port), 1), 10, "redis")
            full_env.update({
                "TRAINYARD_STORE__URL": f"redis://127.0.0.1:{redis_port}/0",
                "TRAINYARD_NODE__COOKIE": "python-client-tests",
                "TRAINYARD_NODE__LISTEN": f'"127.0.0.1:{free_port()}"',
            })
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [binary(), "up", "--http", f"127.0.0.1:{port}", "--trainers", "2", "--data", str(self.dir / "data")],
            env=full_env,
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200, 60, "the node")

    def stop(self) -> None:
        for process in (self.process, self.redis):
            if process is not None:
                process.kill()
                process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module", params=["embedded", "redis"])
def node(request) -> Iterator[RunningNode]:
    running = RunningNode(request.param)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def node_with_token() -> Iterator[RunningNode]:
    running = RunningNode("embedded", {"TRAINYARD_HTTP__TOKEN": TOKEN})
    yield running
    running.stop()
