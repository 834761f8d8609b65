"""HTTP health, readiness and metrics of a running server."""

from __future__ import annotations

import re


def test_readyz_and_metrics(start_server, sio_client, token):
    server = start_server()
    sio_client(server, token=token("alice"))
    sio_client(server, token=token("bob"))

    status, body = server.http("GET", "/readyz")
    metrics_status, metrics = server.http("GET", "/metrics")

    assert status == 200
    assert body == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    assert metrics_status == 200
    assert re.search(r"^dihya_rt_connections 2\.0$", metrics, re.M), metrics
