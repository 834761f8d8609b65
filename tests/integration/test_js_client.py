"""The JavaScript client (clients/js) against real ``dihya-realtime serve`` processes.

Each ``clients/js/test/*.test.js`` file runs under Node's test runner (``node --test``). The
servers are this side's: a small HTTP control endpoint lets a node test start, stop and
restart ``dihya-realtime serve`` processes through the ``start_server`` fixture (``POST
/servers`` with the settings, ``POST /servers/<n>/stop`` and ``/start``), so a restart keeps
its port and the client's reconnect finds it. Tokens are minted by the node tests with the
secret they are given; publications go through the server's HTTP API with the test API key.
The node output is shown when a file fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import TEST_API_KEY, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "js"
NODE_TIMEOUT = 120
REDIS_FILES = {"recovery.test.js"}
TEST_FILES = sorted(p.name for p in (PACKAGE / "test").glob("*.test.js"))


def newest_mtime(paths: list[Path]) -> float:
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


@pytest.fixture(scope="module")
def built_package() -> Path:
    """``clients/js`` with its modules installed from the lockfile and ``dist/`` current."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("Node.js and npm are needed (`make install` installs them)")
    if not (PACKAGE / "node_modules" / ".package-lock.json").exists():
        done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                              cwd=PACKAGE, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    sources = [*(PACKAGE / "src").rglob("*.ts"), PACKAGE / "tsconfig.json"]
    dist = PACKAGE / "dist" / "index.js"
    if not dist.exists() or newest_mtime(sources) > dist.stat().st_mtime:
        done = subprocess.run([npm, "run", "--silent", "build"], cwd=PACKAGE,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    return PACKAGE


class Control:
    """What the node tests may ask for: servers started with settings, stopped, restarted."""

    def __init__(self, start_server: Callable[..., ServerProcess],
                 redis: dict[str, str] | None) -> None:
        self.start_server = start_server
        self.redis = redis
        self.servers: list[ServerProcess] = []
        self.lock = threading.Lock()

    def handle(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        with self.lock:
            if parts == ["servers"]:
                settings = {str(k): str(v) for k, v in (body.get("settings") or {}).items()}
                if body.get("redis"):
                    if self.redis is None:
                        raise ValueError("this test file is not marked as needing Redis")
                    settings.update(self.redis)
                server = self.start_server(**settings)
                self.servers.append(server)
                return {"id": len(self.servers) - 1, "url": server.url}
            if len(parts) == 3 and parts[0] == "servers":
                server = self.servers[int(parts[1])]
                if parts[2] == "stop":
                    server.stop()
                elif parts[2] == "start":
                    server.start()
                elif parts[2] == "restart":
                    server.restart()
                else:
                    raise ValueError(f"unknown action {parts[2]}")
                return {"id": int(parts[1]), "url": server.url, "running": server.running}
        raise ValueError(f"unknown path {path}")


def serve_control(control: Control) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            length = min(int(self.headers.get("Content-Length") or 0), 65536)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                status, reply = 200, control.handle(self.path, body)
            except BaseException as exc:  # pytest.fail raises a BaseException
                status, reply = 500, {"error": f"{type(exc).__name__}: {exc}"}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def control_url(request: pytest.FixtureRequest, start_server: Callable[..., ServerProcess],
                built_package: Path) -> Iterator[str]:
    redis = None
    if request.node.get_closest_marker("redis"):
        redis = {"REDIS_URL": request.getfixturevalue("redis_url"),
                 "REDIS_PREFIX": request.getfixturevalue("redis_prefix")}
    httpd = serve_control(Control(start_server, redis))
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("test_file", [
    pytest.param(name, marks=[pytest.mark.redis] if name in REDIS_FILES else [])
    for name in TEST_FILES])
def test_the_js_client_passes_its_node_tests_against_real_servers(
        test_file: str, control_url: str, built_package: Path, jwt_secret: str) -> None:
    env = {**os.environ, "DIHYA_RT_TEST_CONTROL": control_url,
           "DIHYA_RT_TEST_JWT_SECRET": jwt_secret, "DIHYA_RT_TEST_API_KEY": TEST_API_KEY}
    done = subprocess.run(["node", "--test", "--test-reporter=spec", f"test/{test_file}"],
                          cwd=built_package, env=env, capture_output=True, text=True,
                          timeout=NODE_TIMEOUT, check=False)
    assert done.returncode == 0, f"node --test {test_file} failed:\n{done.stdout}\n{done.stderr}"
    assert "# fail 0" in done.stdout or "ℹ fail 0" in done.stdout, done.stdout


def test_every_node_test_file_is_run() -> None:
    """A file the parametrisation did not see would be a test that never runs."""
    assert set(TEST_FILES) >= {"errors.test.js", "recovery.test.js", "recovery-failed.test.js",
                               "token.test.js", "stream.test.js"}
