"""The examples/ host apps, each started as a real process on a free loopback port.

``start_example("flask_login", **env)`` (``env``: full variable names) runs
``python examples/flask_login/app.py --port N`` with its own SQLite file and audit log, waits
for its ``ready on http://`` line, and stops it at teardown. ``sio_connect(url, …)`` connects
a real python-socketio client over WebSocket.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.conftest import free_port
from tests.integration.conftest import SioClient, clean_environ

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0


class ExampleProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
        self.proc = proc
        self.port = port
        self.workdir = workdir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "".join((self.workdir / name).read_text(errors="replace")
                       for name in ("stdout.log", "stderr.log"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def start_example(tmp_path: Path) -> Iterator[Callable[..., ExampleProcess]]:
    started: list[ExampleProcess] = []

    def start(name: str, **env: str) -> ExampleProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        port = free_port()
        environ = clean_environ()
        environ.update({"DIHYA_RT_DATABASE_URL": f"sqlite:///{workdir / 'example.db'}",
                        "DIHYA_RT_AUDIT_LOG": str(workdir / "audit.log"),
                        "PYTHONPATH": str(ROOT / "src")})
        environ.update(env)
        script = ROOT / "examples" / name / "app.py"
        with open(workdir / "stdout.log", "wb") as out, open(workdir / "stderr.log", "wb") as err:
            proc = subprocess.Popen([sys.executable, str(script), "--port", str(port)],
                                    cwd=workdir, env=environ, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL)
        example = ExampleProcess(proc, port, workdir)
        started.append(example)
        deadline = time.monotonic() + START_TIMEOUT
        while "ready on http://" not in example.output():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{example.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not ready in {START_TIMEOUT} s:\n{example.output()}")
            time.sleep(0.05)
        return example

    yield start
    for example in started:
        example.stop()


@pytest.fixture
def sio_connect() -> Iterator[Callable[..., SioClient]]:
    """``sio_connect(url, auth=…, cookie=…, origin=…)`` → a :class:`SioClient`, connected or
    refused (then ``connect_error`` holds the server's data)."""
    clients: list[SioClient] = []

    def connect(url: str, *, auth: Any = None, cookie: str | None = None,
                origin: str | None = None) -> SioClient:
        options = {"origin": origin} if origin else {}
        client = SioClient(socketio.Client(reconnection=False, websocket_extra_options=options))
        clients.append(client)
        headers = {"Cookie": cookie} if cookie else {}
        with contextlib.suppress(socketio.exceptions.ConnectionError):  # refused: see above
            client.client.connect(url, headers=headers, auth=auth, transports=["websocket"],
                                  wait_timeout=5)
        return client

    yield connect
    for client in clients:
        if client.connected:
            client.disconnect()
