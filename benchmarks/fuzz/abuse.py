"""The ``abuse`` benchmark: bystanders doing acked calls while one attacker runs each hostile
pattern of issue 12 in turn, each against a fresh server (production defaults: rate limits,
frame limit, audit on).

Per pattern: bystander p50/p99/failures over the attack, server RSS before, at most and after
(the attacker gone), and what the attacker achieved. Targets: bystander p99 ≤ 50 ms and RSS
growth ≤ 50 MB per pattern. Every step has a timeout: a server that stalls or dies still
yields a row that says so.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import yjs
from .bystanders import Bystanders
from .server import Serve, rss_kb
from .wire import Closed, SioConn, Timeout, WsConn, connect, frame

P99_TARGET_MS = 50.0
RSS_TARGET_MB = 50.0
PATTERNS = ("baseline", "yjs", "attachments", "connect_flood", "recovery", "retained")


@dataclass
class Attack:
    """What a pattern gets: the server, how long it may run, and a place to write figures."""

    server: Serve
    seconds: float
    quick: bool
    stop: threading.Event = field(default_factory=threading.Event)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def deadline(self) -> float:
        return self.figures.setdefault("_deadline", time.monotonic() + self.seconds)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def attacker(self, timeout: float = 10.0, user: str = "attacker") -> SioConn:
        return connect("127.0.0.1", self.server.port, self.server.token(user), timeout=timeout)


def call(conn: SioConn, event: str, data: Any, timeout: float) -> tuple[Any, float]:
    """An acked call and its duration in ms; the reply is ``"timeout"`` / ``"closed"`` when
    there was none."""
    t0 = time.perf_counter()
    try:
        reply = conn.call(event, data, timeout=timeout)
    except Timeout:
        reply = "timeout"
    except Closed as exc:
        reply = f"closed: {exc}"
    return reply, round((time.perf_counter() - t0) * 1000, 1)


def code(reply: Any) -> str:
    if isinstance(reply, dict):
        return "ok" if reply.get("ok") else str((reply.get("error") or {}).get("code"))
    return str(reply)[:60]


# -- the patterns --------------------------------------------------------------------------------

def baseline(a: Attack) -> None:
    """No attacker: what the bystanders see on a quiet server."""
    a.stop.wait(a.seconds)


def worst_yjs(a: Attack) -> None:
    """~5,200 one-character inserts at the start of a text, each from a new client id
    (~52 KB per update), sent one after the other; then a fresh ``doc:join``."""
    n = 1500 if a.quick else 5200
    conn = a.attacker()
    doc = f"abuse-{uuid.uuid4().hex[:8]}"
    reply, _ = call(conn, "doc:join", {"doc_id": doc}, 10)
    a.figures["join"] = code(reply)
    seed_client = 7
    reply, _ = call(conn, "doc:update", {"doc_id": doc, "update": yjs.seed_text(seed_client)}, 10)
    sent, acks = 0, []
    limit = 2 if a.quick else 4
    while sent < limit and a.left() > 0:
        update = yjs.many_clients(n, seed_client, first_id=10**6 + sent * n)
        reply, ms = call(conn, "doc:update", {"doc_id": doc, "update": update},
                         max(a.left(), 5))
        sent += 1
        acks.append({"bytes": len(update), "reply": code(reply), "ms": ms})
        if not isinstance(reply, dict):
            break
    a.figures.update({"updates": acks, "inserts_per_update": n})
    conn.close()
    fresh = a.attacker(user="late-joiner")
    reply, ms = call(fresh, "doc:join", {"doc_id": doc}, 30)
    a.figures["fresh_join"] = {"reply": code(reply), "ms": ms}
    fresh.close()


def attachment_flood(a: Attack) -> None:
    """A binary ``publish`` announcing a million attachments, then 64 KB binary frames as fast
    as the server takes them (up to 150 MB, 20 MB with --quick)."""
    total = (20 if a.quick else 150) * 1024 * 1024
    conn = a.attacker()
    head = '451000000-1["publish",{"channel":"chat:abuse","data":{"_placeholder":true,"num":0}}]'
    chunk = frame(2, b"\0" * 65536)
    streamed, outcome = 0, "the server took it all"
    try:
        conn.send_raw(frame(1, head.encode()))
        assert conn.sock is not None
        conn.sock.settimeout(2.0)
        while streamed < total and a.left() > 0:
            conn.sock.sendall(chunk)
            streamed += 65536
        if streamed < total:
            outcome = "the server took all it was sent until the time limit"
    except (Closed, OSError) as exc:
        outcome = f"server stopped it: {exc!r}"[:120]
    a.figures.update({"announced": 1_000_000, "streamed_mb": round(streamed / 2**20, 1),
                      "outcome": outcome, "rss_after_stream_mb": round(
                          a.server.rss_kb() / 1024, 1)})
    conn.close()


def connect_flood(a: Attack) -> None:
    """Token-less CONNECTs on one Engine.IO session, and Engine.IO sessions that never send
    CONNECT (400; 100 with --quick), held open; then ten real users try to connect."""
    idle_n = 100 if a.quick else 400
    idle: list[WsConn] = []
    for _ in range(idle_n):
        if a.left() <= 0:
            break
        try:
            idle.append(WsConn("127.0.0.1", a.server.port, timeout=5).open())
        except (Closed, Timeout, OSError):
            break
    a.figures["idle_sessions_opened"] = len(idle)
    sio = SioConn("127.0.0.1", a.server.port, timeout=5)
    connects, answers = 0, {"refused": 0, "accepted": 0, "no_answer": 0}
    try:
        sio.open()
        end = time.monotonic() + max(a.left() - 3, 1)
        while time.monotonic() < end:
            pkt = sio.connect(None)
            connects += 1
            answers["accepted" if pkt.type == 0 else "refused"] += 1
    except Timeout:
        answers["no_answer"] += 1
    except (Closed, OSError) as exc:
        a.figures["flood_session_closed"] = str(exc)[:100]
    sio.close()
    a.figures["tokenless_connects"] = connects
    a.figures["answers"] = answers
    refused = []
    for i in range(10):
        try:
            connect("127.0.0.1", a.server.port, a.server.token(f"late-user-{i}"),
                    timeout=5).close()
        except (Closed, Timeout, OSError) as exc:
            refused.append(str(exc)[:100])
    a.figures["real_users_refused_after"] = f"{len(refused)}/10"
    if refused:
        a.figures["refusal_example"] = refused[0]
    still_open = 0
    for c in idle:
        try:
            assert c.sock is not None
            c.sock.setblocking(False)
            data = c.sock.recv(1, 0x2)  # MSG_PEEK: EOF means the server closed it
            still_open += bool(data) or False
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        c.close()
    a.figures["idle_sessions_still_open_at_end"] = still_open
    audit = Path(a.server.workdir / "audit.jsonl")
    with contextlib.suppress(OSError):
        a.figures["connect_refused_audit_lines"] = sum(
            1 for line in audit.read_text().splitlines() if '"connect_refused"' in line)


def recovery(a: Attack) -> None:
    """A channel filled with 200 publications of ~60 KB (its whole history), then the
    attacker subscribes with ``since`` offset 0 again and again."""
    pub = a.attacker(user="publisher")
    channel = f"chat:abuse-history-{uuid.uuid4().hex[:6]}"
    body = "h" * (60_000 if not a.quick else 30_000)
    epoch, fill = None, 200 if not a.quick else 60
    errors: dict[str, int] = {}
    for i in range(fill):
        reply, _ = call(pub, "publish", {"channel": channel, "data": {"i": i, "body": body}}, 10)
        if isinstance(reply, dict) and reply.get("ok"):
            epoch = reply["data"]["epoch"]
        else:
            errors[code(reply)] = errors.get(code(reply), 0) + 1
            if code(reply) == "rate_limited":
                time.sleep(float(reply["error"].get("retry_after") or 0.1))
    pub.close()
    a.figures.update({"history_publications": fill, "publish_errors": errors})
    if epoch is None:
        a.figures["outcome"] = "no publication accepted"
        return
    conn = a.attacker()
    replies: list[dict[str, Any]] = []
    while a.left() > 0 and len(replies) < 200:
        t0 = time.perf_counter()
        try:
            raw_before = len(conn.buf)
            reply = conn.call("subscribe", {"channel": channel,
                                            "since": {"offset": 0, "epoch": epoch}},
                              timeout=max(a.left(), 5))
            size = len(json.dumps(reply)) if isinstance(reply, dict) else raw_before
        except (Timeout, Closed) as exc:
            replies.append({"reply": repr(exc)[:80]})
            break
        replies.append({"reply": code(reply), "bytes": size,
                        "ms": round((time.perf_counter() - t0) * 1000, 1)})
        call(conn, "unsubscribe", {"channel": channel}, 10)
    conn.close()
    a.figures.update({"subscribes": len(replies),
                      "largest_reply_mb": round(max((r.get("bytes", 0) for r in replies),
                                                    default=0) / 2**20, 2),
                      "slowest_ms": max((r.get("ms", 0) for r in replies), default=0),
                      "replies": sorted({r["reply"] for r in replies})})


def retained(a: Attack) -> None:
    """Publishes of 60 KB with distinct idempotency keys to distinct channels, within the rate
    limits (4 connections of one user), 2,000 of them (300 with --quick) within three times the
    pattern's time; RSS is read after the attacker has gone."""
    target = 300 if a.quick else 2000
    a.figures["_deadline"] = time.monotonic() + a.seconds * 3  # a count to reach, not a time
    conns = [a.attacker() for _ in range(4)]
    counts = {"ok": 0}
    lock = threading.Lock()
    body = "r" * 60_000

    def one(conn: SioConn, k: int) -> None:
        i = k
        while a.left() > 0:
            with lock:
                if counts["ok"] >= target:
                    return
            reply, _ = call(conn, "publish", {
                "channel": f"chat:fill-{i}", "data": {"body": body},
                "idempotency_key": uuid.uuid4().hex}, 10)
            c = code(reply)
            with lock:
                counts[c] = counts.get(c, 0) + 1
            if c == "rate_limited" and isinstance(reply, dict):
                time.sleep(float(reply["error"].get("retry_after") or 0.05))
            elif not isinstance(reply, dict):
                return
            i += 4

    threads = [threading.Thread(target=one, args=(c, k), daemon=True)
               for k, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(a.left(), 0) + 15)
    for c in conns:
        c.close()
    a.figures.update({"publishes": counts, "target": target})


RUNNERS: dict[str, Callable[[Attack], None]] = {
    "baseline": baseline, "yjs": worst_yjs, "attachments": attachment_flood,
    "connect_flood": connect_flood, "recovery": recovery, "retained": retained,
}


def run_pattern(name: str, workdir: Path, *, seconds: float, quick: bool, bystanders: int,
                server_pin: list[str], bystander_cpu: int | None,
                command: list[str] | None = None, env: dict[str, str] | None = None
                ) -> dict[str, Any]:
    """One pattern against a fresh server; the row for ``benchmarks/run.py``."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = Serve(workdir, env=dict(env or {}), pin=server_pin, command=command)
    server.start()
    row: dict[str, Any] = {"pattern": name, "bystanders": bystanders}
    try:
        pool = Bystanders(server.port, server.secret, bystanders, interval=0.1,
                          cpu=bystander_cpu)
        if not pool.start():
            row["error"] = "bystanders could not all connect"
        time.sleep(1.0)
        server.new_errors()
        before = server.rss_kb()
        attack = Attack(server, seconds, quick)
        peak = [before]

        def sample() -> None:
            while not attack.stop.is_set():
                peak[0] = max(peak[0], rss_kb(server.pid))
                attack.stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        failure = None
        worker = threading.Thread(target=_guarded, args=(RUNNERS[name], attack, row),
                                  daemon=True)
        worker.start()
        worker.join(3 * seconds + 90)  # each step has its own timeout; this is the last resort
        if worker.is_alive():
            failure = f"attacker still running after {3 * seconds + 90:.0f} s"
        time.sleep(1.0)  # the attacker is gone; what stays is retained
        attack.stop.set()
        row["attack_s"] = round(time.monotonic() - t0, 1)
        row["bystander"] = pool.stop()
        after = server.rss_kb()
        row.update({
            "rss_before_mb": round(before / 1024, 1), "rss_after_mb": round(after / 1024, 1),
            "rss_max_mb": round(peak[0] / 1024, 1),
            "rss_growth_mb": round((after - before) / 1024, 1),
            "server_alive": server.alive,
            "server_errors": len(server.new_errors()),
            "attacker": {k: v for k, v in attack.figures.items() if not k.startswith("_")},
        })
        if failure:
            row["error"] = failure
    finally:
        server.stop()
    b = row.get("bystander", {})
    p99 = b.get("p99_ms")
    row["p99_ok"] = p99 is not None and p99 <= P99_TARGET_MS and not b.get("failures")
    row["rss_ok"] = row.get("rss_growth_mb", 1e9) <= RSS_TARGET_MB and \
        row.get("rss_max_mb", 1e9) - row.get("rss_before_mb", 0) <= RSS_TARGET_MB
    return row


def _guarded(fn: Callable[[Attack], None], attack: Attack, row: dict[str, Any]) -> None:
    try:
        fn(attack)
    except Exception as exc:  # noqa: BLE001 - a pattern that breaks is a figure, not a crash
        row["attacker_error"] = repr(exc)[:300]
