"""CORS headers: only on the Socket.IO path, credentials only for listed origins."""

from __future__ import annotations


def test_cors_headers_only_on_the_socketio_path_and_credentials_only_for_listed(make_rt):
    rt = make_rt(allowed_origins="https://app.example")
    http = rt.app.test_client()
    host_route = http.get("/healthz", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in host_route.headers
    poll = http.get("/socket.io/?EIO=4&transport=polling",
                    headers={"Origin": "https://app.example"})
    assert poll.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert poll.headers["Access-Control-Allow-Credentials"] == "true"
    evil = http.get("/socket.io/?EIO=4&transport=polling",
                    headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in evil.headers

    star = make_rt(allowed_origins="*").app.test_client()
    any_origin = star.get("/socket.io/?EIO=4&transport=polling",
                          headers={"Origin": "https://anyone.example"})
    assert any_origin.headers["Access-Control-Allow-Origin"] == "https://anyone.example"
    assert "Access-Control-Allow-Credentials" not in any_origin.headers
