"""The HTTP surface under hostile input, against a real ``serve`` process: the access log
leaks no credential and no control byte, malformed packets are refused without a traceback,
request headers must arrive in time, and request bodies are bounded."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.request

import pytest

from tests.integration.conftest import ServerProcess


def _raw(server: ServerProcess, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection; everything answered until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks)


def _handshake(server: ServerProcess, query: str = "") -> str:
    url = f"{server.url}/socket.io/?EIO=4&transport=polling{query}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read().decode()[1:])["sid"]


def _post(server: ServerProcess, sid: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}",
                                 data=body, method="POST",
                                 headers={"Content-Type": "text/plain;charset=UTF-8"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _poll(server: ServerProcess, sid: str) -> str:
    url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"


def _wait_stderr(server: ServerProcess, needle: str, timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while needle not in (err := server.stderr()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return err


def test_access_log_shows_paths_only_never_a_sid_a_token_or_a_control_byte(
        start_server, token) -> None:
    server = start_server(ALLOW_QUERY_TOKEN="true")
    secret = token("alice")
    sid = _handshake(server, f"&token={secret}")
    _post(server, sid, b"40")  # the sid in the query string, as the client sends it
    _raw(server, b"GET /heal\x1b[31mthz\x07?q=\x1b HTTP/1.1\r\nHost: x\r\n\r\n")
    urllib.request.urlopen(f"{server.url}/healthz?probe=%1b%5b31m", timeout=5).read()
    err = _wait_stderr(server, "/healthz ")
    assert '"GET /socket.io/ HTTP/1.1" 200' in err  # the access log is still there
    assert "/heal\\x1b[31mthz\\x07 " in err  # the control bytes, escaped
    assert sid not in err
    assert secret not in err and secret.split(".")[2] not in err
    assert "\x1b" not in err and "\x07" not in err
    assert "probe=" not in err and "transport=polling" not in err


@pytest.mark.parametrize("packet", [
    "40" + "[" * 5000 + "]" * 5000,
    '40{"token":' + "[" * 5000 + "]" * 5000 + "}",
    '40{"token":[[[',
    "42" + "[" * 5000 + "]" * 5000,
    "4x",
])
def test_deep_or_malformed_json_before_login_is_refused_without_a_traceback(
        start_server, sio_client, token, packet: str) -> None:
    server = start_server()
    sid = _handshake(server)
    status, _ = _post(server, sid, packet.encode())
    assert status == 200
    answer = _poll(server, sid)
    if packet.startswith("40"):
        assert answer.startswith("44"), answer  # a connect_error naming the problem
        refusal = json.loads(answer[2:].split("\x1e")[0])
        assert refusal["code"] == "invalid_payload"
    time.sleep(0.3)
    assert "Traceback" not in server.stderr()
    assert "malformed" in server.stderr()
    assert sid not in server.stderr()
    # the server goes on serving everyone else
    assert sio_client(server, token=token("bob")).call("whoami")["ok"]


def test_request_headers_must_arrive_within_the_header_timeout(start_server) -> None:
    server = start_server(HTTP_HEADER_TIMEOUT="0.5")
    socks = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never ends the headers
        socks.append(sock)
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(10):  # a header every 0.1 s: each read is quick, the whole is not
        time.sleep(0.1)
        try:
            slow.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
    for sock in socks:
        sock.settimeout(3)
        assert sock.recv(100) == b""  # closed by the server
        sock.close()
    assert time.monotonic() - started < 3
    slow.settimeout(3)
    with contextlib.suppress(ConnectionResetError):
        assert slow.recv(100) == b""
    slow.close()
    # a whole request in time is answered
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
        assert resp.status == 200


def _publish_request(length: int, chunked: bool = False) -> bytes:
    head = (b"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer itest-api-key-0123456789abcdef\r\n")
    if chunked:
        return head + b"Transfer-Encoding: chunked\r\n\r\n"
    return head + f"Content-Length: {length}\r\n\r\n".encode()


def _status_and_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_an_http_body_over_the_limit_is_refused_413_from_its_content_length(
        start_server) -> None:
    server = start_server(MAX_HTTP_BODY_BYTES="1048576")
    started = time.monotonic()
    # only the headers are sent: the refusal comes before any of the 30 MB is read
    raw = _raw(server, _publish_request(30 * 1024 * 1024))
    assert time.monotonic() - started < 2
    status, body = _status_and_json(raw)
    assert status == 413
    assert body["ok"] is False and body["error"]["code"] == "payload_too_large"
    # a legitimate publish still goes through
    status, reply = server.http("POST", "/api/v1/publish", {"channel": "live:x", "data": 1},
                                api_key=True)
    assert status == 200, reply


def test_a_chunked_http_body_is_refused_413_once_it_passes_the_limit(start_server) -> None:
    server = start_server(MAX_HTTP_BODY_BYTES="1048576")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_publish_request(0, chunked=True))
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < 30 * 1024 * 1024:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:
            pass  # the server stopped reading: refused
        assert sent < 16 * 1024 * 1024  # the limit, plus what kernel buffers hold
        raw = b""
        try:
            while part := sock.recv(65536):
                raw += part
        except OSError:
            pass
    status, body = _status_and_json(raw)
    assert status == 413 and body["error"]["code"] == "payload_too_large"


def test_a_small_chunked_body_is_still_accepted(start_server) -> None:
    server = start_server()
    body = json.dumps({"channel": "live:x", "data": {"n": 1}}).encode()
    raw = _raw(server, _publish_request(0, chunked=True)
               + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
               + b"", timeout=2)
    status, reply = _status_and_json(raw.split(b"\r\n0\r\n\r\n")[0]
                                     if b"Transfer-Encoding: chunked" in raw.split(b"\r\n\r\n")[0]
                                     else raw)
    assert status == 200, reply


def test_engineio_polling_post_bodies_are_bounded_by_max_payload_bytes(start_server) -> None:
    """A polling POST over DIHYA_RT_MAX_PAYLOAD_BYTES is refused (413) from its
    Content-Length, before it is read, or as a chunked body arrives (engine.io used to read
    that one as empty), and the refusal is immediate: engine.io's own refusal waited for the
    client's next GET inside the POST, which then hung for good without one."""
    server = start_server(MAX_PAYLOAD_BYTES="4096", PING_INTERVAL="1", PING_TIMEOUT="1")
    for chunked in (False, True):
        sid = _handshake(server)
        path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        if chunked:
            request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "\r\n1f40\r\n").encode() + b"4" * 8000 + b"\r\n0\r\n\r\n"
        else:
            request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 8001\r\n"
                       "\r\n").encode() + b"4" + b"x" * 8000
        started = time.monotonic()
        status, body = _status_and_json(_raw(server, request, timeout=5))
        assert status == 413 and body["error"]["code"] == "payload_too_large"
        assert time.monotonic() - started < 2
    # a POST within the limit is still taken
    sid = _handshake(server)
    assert _post(server, sid, b"40")[0] == 200
