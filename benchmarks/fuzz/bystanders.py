"""Bystanders: ordinary users making acked ``whoami`` calls while someone else attacks.

They run in a process of their own (forked), so that their latency measures the server, not
the attacker's Python threads fighting over one GIL. A call without an answer within
``timeout`` seconds is a failure (``timeout``, counted in the latencies as ``timeout``: a lower
bound), so is a connection the server closes (``disconnect``); both reconnect and go on.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import threading
import time
from typing import Any

import jwt

from .wire import Closed, SioConn, Timeout, connect


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 2)


def _token(secret: str, user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "roles": ["user"], "iat": now, "exp": now + 7200}, secret,
                      algorithm="HS256")


def _child(port: int, secret: str, count: int, interval: float, timeout: float,
           ready: Any, stop: Any, out: Any, cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    lock = threading.Lock()
    latencies: list[float] = []
    failures: collections.Counter = collections.Counter()
    examples: list[str] = []
    connected = [0]
    t0 = time.monotonic()

    def fail(idx: int, what: str, detail: str) -> None:
        with lock:
            failures[what] += 1
            if len(examples) < 20:
                examples.append(f"{time.monotonic() - t0:.1f}s bystander-{idx}: {what}: "
                                f"{detail[:160]}")

    def one(idx: int) -> None:
        conn: SioConn | None = None
        first = True
        while not stop.is_set():
            try:
                if conn is None:
                    conn = connect("127.0.0.1", port, _token(secret, f"bystander-{idx}"),
                                   timeout=timeout)
                    if first:
                        first = False
                        with lock:
                            connected[0] += 1
                            if connected[0] == count:
                                ready.set()
                start = time.perf_counter()
                reply = conn.call("whoami", timeout=timeout)
                ms = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(ms)
                if not (isinstance(reply, dict) and reply.get("ok")):
                    fail(idx, "bad_reply", repr(reply))
            except Closed as exc:
                if stop.is_set():
                    break
                fail(idx, "disconnect", str(exc))
                conn = None
                stop.wait(0.2)
            except (Timeout, OSError) as exc:
                if stop.is_set():
                    break
                if isinstance(exc, Timeout) and conn is not None:
                    with lock:  # a call that never came back took at least the timeout
                        latencies.append(timeout * 1000)
                fail(idx, "timeout", repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
                stop.wait(0.2)
            stop.wait(interval)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for i, t in enumerate(threads):
        t.start()
        if i % 10 == 9:
            time.sleep(0.05)  # not a connect burst: the per-address bucket is for the attacker
    stop.wait()
    for t in threads:
        t.join(timeout + 1)
    out.put({"latencies": latencies, "failures": dict(failures), "examples": examples})


class Bystanders:
    """``count`` bystanders in a child process; ``start()`` returns once all are connected
    (or ``connect_timeout`` passed), ``stop()`` returns what they saw."""

    def __init__(self, port: int, secret: str, count: int, *, interval: float = 0.05,
                 timeout: float = 5.0, cpu: int | None = None) -> None:
        ctx = mp.get_context("fork")
        self.ready, self.stop_event, self.out = ctx.Event(), ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(target=_child, daemon=True, args=(
            port, secret, count, interval, timeout, self.ready, self.stop_event, self.out, cpu))
        self.timeout = timeout

    def start(self, connect_timeout: float = 20.0) -> bool:
        self.proc.start()
        return bool(self.ready.wait(connect_timeout))

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        try:
            res = self.out.get(timeout=self.timeout + 10)
        except Exception:  # noqa: BLE001 - the child died: say so rather than hang
            res = {"latencies": [], "failures": {"bystander process died": 1}, "examples": []}
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
        lat = res["latencies"]
        return {"calls": len(lat), "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
                "max_ms": round(max(lat), 1) if lat else None, "failures": res["failures"],
                "examples": res["examples"]}
