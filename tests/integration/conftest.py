"""Integration-test world: real ``dihya-realtime serve`` processes, real Socket.IO clients.

Unit tests use Flask-SocketIO's test client, which has no network and no message queue;
everything about transports, frame limits, process lifetimes, Redis and several processes
needs a real server on a loopback port, which these fixtures start and always stop:

- ``start_server(**env)`` → :class:`ServerProcess` (gevent, its own SQLite file, audit file
  and API key; ``env`` overrides ``DIHYA_RT_*`` variables, e.g. ``MAX_PAYLOAD_BYTES="4096"``).
- ``sio_client(server, token=…)`` → a connected :class:`SioClient` that records every event.
- ``connect_error(server, token=…)`` → the ``connect_error`` data of a refused connection.
- ``two_servers`` → two processes sharing one Redis (message queue, broker) and one PostgreSQL.
- ``token(user, roles=("user",), ttl=3600, **claims)`` → an HS256 JWT the servers accept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import socketio

from dihya_realtime.kernel.auth import hash_api_key
from dihya_realtime.testing.server import http_json
from tests.conftest import free_port

BIN = Path(sys.executable).parent
READY = "dihya-realtime ready on http://"
START_TIMEOUT = 15.0
TEST_API_KEY = "itest-api-key-0123456789abcdef"


def cli_command() -> list[str]:
    """The console script of this venv, or the module when it is not installed as a script."""
    script = BIN / "dihya-realtime"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dihya_realtime.cli"]


def clean_environ() -> dict[str, str]:
    """The test runner's environment without any ``DIHYA_RT_*`` a developer may have set."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("DIHYA_RT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """One ``dihya-realtime serve`` process on a fixed loopback port.

    Output goes to files in ``workdir`` (a pipe nobody reads would fill and block the server).
    ``restart()`` reuses the port and the environment, so clients can reconnect to ``url``.
    """

    def __init__(self, workdir: Path, env: dict[str, str], port: int,
                 args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.env = env
        self.port = port
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_line = ""
        self.starts = 0
        self.api_key = TEST_API_KEY

    # -- where things are
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"stdout.{self.starts}.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"stderr.{self.starts}.log"

    @property
    def audit_path(self) -> Path:
        return Path(self.env["DIHYA_RT_AUDIT_LOG"])

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    # -- lifetime
    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        """Start and wait for the ready line; fail the test with stderr if it never comes."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> ServerProcess:
        """Start the process without waiting (to start several at once, then ``wait_ready``)."""
        self.starts += 1
        cmd = [*cli_command(), "serve", "--port", str(self.port), *self.args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, stdout=out,
                                         stderr=err, stdin=subprocess.DEVNULL)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        assert self.proc is not None, "server not launched"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout().splitlines():
                if line.startswith(READY):
                    self.ready_line = line
                    return self
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode} before it was ready:\n"
                            f"{self.stderr()}\n{self.stdout()}")
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"server not ready within {timeout} s:\n{self.stderr()}\n{self.stdout()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (the server flushes its audit trail), then SIGKILL if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed (for recovery scenarios)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    # -- looking inside
    def audit_lines(self) -> list[dict[str, Any]]:
        """Every JSON line of the audit file so far (written synchronously by the server)."""
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line]

    def wait_audit(self, type_: str, predicate: Callable[[dict], bool] | None = None,
                   timeout: float = 5.0) -> dict[str, Any]:
        """The first audit line of ``type_`` (matching ``predicate``), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.audit_lines():
                if line["type"] == type_ and (predicate is None or predicate(line)):
                    return line
            if time.monotonic() > deadline:
                types = [line["type"] for line in self.audit_lines()]
                raise AssertionError(f"no audit line {type_!r} within {timeout} s; got {types}")
            time.sleep(0.05)

    def wait_output(self, pattern: str, count: int = 1, timeout: float = 5.0) -> list[str]:
        """Stdout lines matching the regex ``pattern`` once there are ``count`` of them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.stdout().splitlines() if regex.search(line)]
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} x {pattern!r} not in stdout within {timeout} s:"
                                     f"\n{self.stdout()}")
            time.sleep(0.02)

    def cli(self, *args: str, timeout: float = 30.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run another ``dihya-realtime`` command with this server's environment."""
        return subprocess.run([*cli_command(), *args], cwd=self.workdir,
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def http(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, api_key: bool = False,
             timeout: float = 5.0) -> tuple[int, Any]:
        """``(status, parsed JSON or text)``; ``api_key=True`` adds this server's API key."""
        hdrs = dict(headers or {})
        if api_key:
            hdrs["Authorization"] = f"Bearer {self.api_key}"
        return http_json(method, self.url + path, body, hdrs, timeout)


class SioClient:
    """A python-socketio client that records what it receives, for assertions.

    ``received`` holds ``(event, data)`` pairs in arrival order; ``wait_for`` blocks until one
    matches. ``call`` sends with an ack and returns the reply envelope.
    """

    def __init__(self, client: socketio.Client) -> None:
        self.client = client
        self.received: list[tuple[str, Any]] = []
        self.connect_error: Any = None
        self.disconnect_reason: Any = None
        self.disconnected = threading.Event()
        self._cond = threading.Condition()

        @client.on("*")
        def _any(event: str, *args: Any) -> None:
            self._record(event, args[0] if args else None)

        @client.on("connect_error")
        def _refused(data: Any = None) -> None:
            self.connect_error = data

        @client.on("disconnect")
        def _gone(reason: Any = None) -> None:
            self.disconnect_reason = reason
            self.disconnected.set()

    def _record(self, event: str, data: Any) -> None:
        with self._cond:
            self.received.append((event, data))
            self._cond.notify_all()

    @property
    def sid(self) -> str | None:
        return self.client.get_sid()

    @property
    def connected(self) -> bool:
        return self.client.connected

    def events(self, name: str) -> list[Any]:
        """Payloads of ``name`` received so far (not cleared)."""
        with self._cond:
            return [data for event, data in self.received if event == name]

    def wait_for(self, event: str, predicate: Callable[[Any], bool] | None = None,
                 timeout: float = 5.0) -> Any:
        """The first payload of ``event`` (matching ``predicate``), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name, data in self.received:
                    if name == event and (predicate is None or predicate(data)):
                        return data
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [name for name, _ in self.received]
                    raise AssertionError(f"no {event!r} within {timeout} s; received {got}")
                self._cond.wait(left)

    def call(self, event: str, data: Any = None, timeout: float = 5.0) -> Any:
        """Emit with an ack; the reply envelope (``socketio.exceptions.TimeoutError`` if none)."""
        return self.client.call(event, data, timeout=timeout)

    def emit(self, event: str, data: Any = None) -> None:
        self.client.emit(event, data)

    def wait_disconnected(self, timeout: float = 5.0) -> Any:
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"still connected after {timeout} s")
        return self.disconnect_reason

    def disconnect(self) -> None:
        if self.client.connected:
            self.client.disconnect()


def raw_socketio(server: ServerProcess, token: str) -> Any:
    """A bare WebSocket, Socket.IO-connected with ``token``: for frames a client library will
    not send (fragments, oversized or invalid messages) and for reading close codes."""
    import websocket

    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/"
                                     "?EIO=4&transport=websocket", timeout=10)
    ws.recv()  # engine.io open
    ws.send("40" + json.dumps({"token": token}))
    assert ws.recv().startswith("40")
    return ws


def _new_client(reconnection: bool, headers: dict[str, str] | None,
                transports: list[str]) -> tuple[SioClient, dict[str, str]]:
    """A recording client, and the headers to pass to ``connect``.

    websocket-client always sends its own ``Origin`` (the server's URL); an ``Origin`` in
    ``headers`` would be a second one, which the server sees joined into one bad value. So
    for WebSocket an ``Origin`` header is moved to websocket-client's ``origin`` option.
    """
    headers = dict(headers or {})
    options: dict[str, Any] = {}
    origin = next((k for k in headers if k.lower() == "origin"), None)
    if origin is not None and "websocket" in transports:
        options["origin"] = headers.pop(origin)
    client = socketio.Client(reconnection=reconnection, logger=False, engineio_logger=False,
                             websocket_extra_options=options)
    return SioClient(client), headers


def _open(clients: list[SioClient], server: ServerProcess, *, reconnection: bool,
          token: str | None, auth: Any, headers: dict[str, str] | None, url: str | None,
          transports: list[str] | None, wait: bool,
          timeout: float) -> tuple[SioClient, Exception | None]:
    """A new recording client (kept in ``clients`` for teardown), connected; ``auth`` defaults
    to ``{"token": token}``. Returns the client and the refusal, if it was refused."""
    transports = transports or ["websocket"]
    client, headers = _new_client(reconnection, headers, transports)
    clients.append(client)
    if auth is None and token is not None:
        auth = {"token": token}
    try:
        client.client.connect(url or server.url, headers=headers, auth=auth,
                              transports=transports, wait=wait, wait_timeout=timeout)
    except socketio.exceptions.ConnectionError as exc:
        return client, exc
    return client, None


def _disconnect_all(clients: list[SioClient]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):  # a server already gone is not this test's failure
            client.disconnect()


@pytest.fixture
def token(jwt_secret: str) -> Callable[..., str]:
    """``token("alice", roles=("user",), ttl=3600, **claims)`` → an HS256 JWT.

    ``secret=`` signs with another key (for bad-signature tests); extra claims are merged.
    """

    def make(user: str = "alice", roles: tuple[str, ...] | list[str] = ("user",),
             ttl: float = 3600, secret: str | None = None, **claims: Any) -> str:
        now = time.time()
        body = {"sub": user, "roles": list(roles), "iat": int(now), "exp": int(now + ttl),
                **claims}
        return jwt.encode(body, secret or jwt_secret, algorithm="HS256")

    return make


@pytest.fixture
def server_env(jwt_secret: str) -> dict[str, str]:
    """The ``DIHYA_RT_*`` variables every test server gets (before per-server paths)."""
    return {
        "DIHYA_RT_JWT_SECRET": jwt_secret,
        "DIHYA_RT_API_KEYS": hash_api_key(TEST_API_KEY),
    }


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once by ``dihya-realtime migrate``; servers start from a copy.

    Copying saves an interpreter start and an Alembic run per server.
    """
    path = tmp_path_factory.mktemp("template") / "realtime.db"
    env = {**clean_environ(), "DIHYA_RT_DATABASE_URL": f"sqlite:///{path}"}
    result = subprocess.run([*cli_command(), "migrate"], cwd=path.parent, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"migrate failed:\n{result.stderr}"
    return path


@pytest.fixture
def start_server(tmp_path: Path, server_env: dict[str, str],
                 migrated_sqlite: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``start_server(**env)`` → a ready :class:`ServerProcess`; all are stopped at teardown.

    Keyword names are settings without the prefix (``MAX_PAYLOAD_BYTES="4096"``) or full
    variable names; ``None`` removes a variable (``JWT_SECRET=None``). Extra options:
    ``args=("--dev",)``, ``migrate=False`` (an unmigrated database; by default the server's
    own SQLite file is a copy of one migrated by ``dihya-realtime migrate``, and a
    ``DATABASE_URL`` override is migrated with that command),
    ``start=False`` (return it unstarted: to check a start-up failure, or to ``launch()``
    several and then ``wait_ready()`` each).
    """
    servers: list[ServerProcess] = []

    def start(*, args: tuple[str, ...] = (), migrate: bool = True, start: bool = True,
              **overrides: Any) -> ServerProcess:
        workdir = tmp_path / f"server{len(servers) + 1}"
        workdir.mkdir()
        env = clean_environ()
        env.update(server_env)
        env["DIHYA_RT_DATABASE_URL"] = f"sqlite:///{workdir / 'realtime.db'}"
        env["DIHYA_RT_AUDIT_LOG"] = str(workdir / "audit.log")
        for key, value in overrides.items():
            name = key.upper() if key.upper().startswith("DIHYA_RT_") else "DIHYA_RT_" + key.upper()
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value if isinstance(value, str) else json.dumps(value)
        server = ServerProcess(workdir, env, free_port(), args)
        servers.append(server)
        own_sqlite = "DATABASE_URL" not in {k.upper().removeprefix("DIHYA_RT_")
                                            for k in overrides}
        if migrate and own_sqlite:
            shutil.copyfile(migrated_sqlite, workdir / "realtime.db")
        elif migrate:
            result = server.cli("migrate")
            assert result.returncode == 0, f"migrate failed:\n{result.stderr}"
        return server.start() if start else server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sio_client() -> Iterator[Callable[..., SioClient]]:
    """``sio_client(server, token=…, headers=…, transports=["websocket"], wait=True)``.

    Returns a connected :class:`SioClient` (``reconnection=False`` unless asked); a refused
    connection fails the test with the ``connect_error`` data. ``url=`` overrides the URL
    (e.g. to add a query string); ``auth=`` replaces the ``{"token": …}`` payload.
    """
    clients: list[SioClient] = []

    def connect(server: ServerProcess, token: str | None = None,
                headers: dict[str, str] | None = None,
                transports: list[str] | None = None, wait: bool = True,
                reconnection: bool = False, url: str | None = None, auth: Any = None,
                timeout: float = 5.0) -> SioClient:
        client, refused = _open(clients, server, reconnection=reconnection, token=token,
                                auth=auth, headers=headers, url=url, transports=transports,
                                wait=wait, timeout=timeout)
        if refused is not None:
            pytest.fail(f"connection refused: {refused}; connect_error={client.connect_error!r}")
        return client

    yield connect
    _disconnect_all(clients)


@pytest.fixture
def connect_error() -> Iterator[Callable[..., Any]]:
    """``connect_error(server, token=…, headers=…, url=…)`` → the refusal's data dict.

    Fails the test if the connection is accepted. The dict has top-level ``code``,
    ``reason`` and ``message`` (see ``server.refusal``).
    """
    clients: list[SioClient] = []

    def attempt(server: ServerProcess, token: str | None = None,
                headers: dict[str, str] | None = None, url: str | None = None,
                auth: Any = None, transports: list[str] | None = None,
                timeout: float = 5.0) -> Any:
        client, refused = _open(clients, server, reconnection=False, token=token, auth=auth,
                                headers=headers, url=url, transports=transports, wait=True,
                                timeout=timeout)
        if refused is not None:
            deadline = time.monotonic() + timeout
            while client.connect_error is None and time.monotonic() < deadline:
                time.sleep(0.01)
            return client.connect_error
        pytest.fail("the connection was accepted, a refusal was expected")

    yield attempt
    _disconnect_all(clients)


def reset_postgres(url: str) -> None:
    """An empty ``public`` schema: the previous test's tables are gone."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture
def two_servers(start_server: Callable[..., ServerProcess], redis_url: str, redis_prefix: str,
                postgres_url: str) -> tuple[ServerProcess, ServerProcess]:
    """Two processes sharing one Redis (message queue and broker) and one PostgreSQL."""
    reset_postgres(postgres_url)
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix,
              "DATABASE_URL": postgres_url}
    first = start_server(start=False, **shared)  # migrates the shared database once
    second = start_server(start=False, migrate=False, **shared)
    first.launch()
    second.launch()
    return first.wait_ready(), second.wait_ready()
