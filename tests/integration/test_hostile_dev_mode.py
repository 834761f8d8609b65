"""``serve --dev`` with a configured (production) JWT secret never signs with it: no demo
tokens printed, ``/dev/token`` absent; with the generated dev secret it works, loopback only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def _post(url: str, host: str | None = None) -> int:
    req = urllib.request.Request(url, data=json.dumps({"user_id": "eve"}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    if host is not None:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_dev_mode_with_a_configured_secret_signs_nothing(start_server, jwt_secret) -> None:
    server = start_server(args=("--dev",), API_KEYS=None)
    assert "demo token for" not in server.stdout()
    assert "no demo tokens" in server.stdout()
    assert _post(server.url + "/dev/token") == 404
    assert jwt_secret not in server.stdout()


def test_dev_mode_with_the_dev_secret_answers_loopback_hosts_only(start_server) -> None:
    server = start_server(args=("--dev",), JWT_SECRET=None, API_KEYS=None)
    server.wait_output(r"^demo token for ", count=2)
    assert _post(server.url + "/dev/token") == 200
    assert _post(server.url + "/dev/token", host="rebound.attacker.example") == 403
