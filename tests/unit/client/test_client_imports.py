"""The client is light: a worker or a bot installs ``dihya-realtime[client]`` and imports no
server machinery (Flask, SQLAlchemy, gevent, pydantic, the server's own modules)."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_MODULES = ("flask", "flask_socketio", "sqlalchemy", "gevent", "pydantic", "alembic",
                  "pycrdt", "dihya_realtime.realtime", "dihya_realtime.kernel.settings",
                  "dihya_realtime.transport", "dihya_realtime.features")


def imported_after(statement: str) -> list[str]:
    code = (f"import sys, json; {statement}; "
            f"print(json.dumps([m for m in {SERVER_MODULES!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


def test_importing_the_client_loads_no_server_module():
    assert imported_after("import dihya_realtime.client") == []


def test_loading_the_pytest_plugin_loads_nothing_heavy_until_a_fixture_is_used():
    assert imported_after("import dihya_realtime.testing") == []
