"""A real dihya-realtime server process for tests: started on a free loopback port, waited
for, and always stopped.

Without a factory it is ``dihya-realtime serve`` itself; with a host app factory
(``"package.module:create_app"``) it is :mod:`dihya_realtime.testing.serve_app`, which serves
that app the way ``serve`` does (gevent, the same WebSocket stack and guards).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

READY = "dihya-realtime ready on http://"
START_TIMEOUT = 20.0


class ServerStartError(RuntimeError):
    """The server exited or stayed silent before its ready line (its output is attached)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_command() -> list[str]:
    """This interpreter's ``dihya-realtime`` script, or the module when there is none."""
    script = Path(sys.executable).parent / "dihya-realtime"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dihya_realtime.cli"]


def factory_path(factory: str | Callable[..., Any]) -> str:
    """``"module:function"`` for a factory given as a string or as an importable function."""
    if isinstance(factory, str):
        return factory
    qualname = getattr(factory, "__qualname__", "")
    if "<" in qualname or not getattr(factory, "__module__", None):
        raise ValueError(f"{factory!r} is not importable by name: define it at module level "
                         "or give 'module:function'")
    return f"{factory.__module__}:{qualname}"


def settings_environ(settings: dict[str, Any]) -> dict[str, str]:
    """``DIHYA_RT_*`` variables for settings given as keyword overrides."""
    env = {}
    for key, value in settings.items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env["DIHYA_RT_" + key.upper()] = value if isinstance(value, str) else json.dumps(value)
    return env


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
              timeout: float = 5.0) -> tuple[int, Any]:
    """One HTTP request with a JSON body (if any): ``(status, parsed JSON or text)``; an
    error status is returned, not raised, so a test can assert on it."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get_content_type()
    text = raw.decode(errors="replace")
    return status, (json.loads(text) if ctype == "application/json" else text)

class RealtimeServer:
    """One server process; ``url``, ``http(...)`` (with ``api_key=True`` for the HTTP API),
    ``stop()``, ``restart()`` (same port: clients reconnect to the same ``url``)."""

    def __init__(self, workdir: Path, env: dict[str, str], *, factory: str | None = None,
                 api_key: str | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        self.env = env
        self.factory = factory
        self.api_key = api_key
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.factory is None:
            return [*cli_command(), "serve", "--port", str(self.port)]
        return [sys.executable, "-m", "dihya_realtime.testing.serve_app", self.factory,
                "--port", str(self.port)]

    @property
    def output_path(self) -> Path:
        return self.workdir / f"server.{self.starts}.log"

    def output(self) -> str:
        path = self.output_path
        return path.read_text(errors="replace") if path.exists() else ""

    def migrate(self) -> None:
        """``dihya-realtime migrate`` on this server's database (``serve`` itself does not)."""
        result = subprocess.run([*cli_command(), "migrate"], cwd=self.workdir, env=self.env,
                                capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise ServerStartError(f"migrate failed:\n{result.stderr}")

    def start(self, timeout: float = START_TIMEOUT) -> RealtimeServer:
        self.starts += 1
        with open(self.output_path, "wb") as out:
            self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith(READY) for line in self.output().splitlines()):
                return self
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"server exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.02)
        self.kill()
        raise ServerStartError(f"server not ready within {timeout} s:\n{self.output()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (clients see a server disconnect), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> RealtimeServer:
        self.stop()
        return self.start()

    def http(self, method: str, path: str, body: Any = None, *, api_key: bool = False,
             timeout: float = 5.0) -> tuple[int, Any]:
        """``(status, parsed JSON or text)``."""
        headers = {}
        if api_key:
            if self.api_key is None:
                raise ValueError("this server has no API key")
            headers["Authorization"] = f"Bearer {self.api_key}"
        return http_json(method, self.url + path, body, headers, timeout)

    def publish(self, channel: str, data: Any) -> dict[str, Any]:
        """Publish through the HTTP API; the publication's ``{offset, epoch, id, created}``."""
        status, reply = self.http("POST", "/api/v1/publish", {"channel": channel, "data": data},
                                  api_key=True)
        if status != 200:
            raise AssertionError(f"publish failed: {status} {reply}")
        return dict(reply["data"])


def server_environ(workdir: Path, settings: dict[str, Any]) -> dict[str, str]:
    """The environment of a server process: the test runner's without any ``DIHYA_RT_*``,
    plus ``settings``, its own SQLite file and audit log unless given, and ``PYTHONPATH``
    reaching what the test process imports (the host app's modules)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("DIHYA_RT_")}
    env["PYTHONUNBUFFERED"] = "1"
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([os.getcwd(), *paths]))
    settings = {k: v for k, v in settings.items() if k != "async_mode"}
    settings.setdefault("database_url", f"sqlite:///{workdir / 'realtime.db'}")
    settings.setdefault("audit_log", str(workdir / "audit.log"))
    env.update(settings_environ(settings))
    return env
