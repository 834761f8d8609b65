"""Bursts of broker calls on one process with Redis: none may fail on a healthy Redis.

Under gevent every event runs in its own greenlet, so hundreds of ``subscribe`` calls arriving
together become hundreds of simultaneous Redis calls. redis-py's default connection pool
raises "Too many connections" past 100 instead of waiting, which answered ``unavailable`` to
23-39% of 1,000 simultaneous subscribes in the benchmark (issue 6). The broker's pool now
blocks for a free connection; this sends 300 subscribes at once and wants 300 ``ok``.
"""

from __future__ import annotations

import json
import threading

import redis as redis_lib

GENEROUS = json.dumps({"rate": 100000, "burst": 100000})
NAMESPACES = {"storm": {"subscribe": "chat:write", "publish": "chat:write", "presence": True,
                        "history": {"size": 10, "ttl": 60}}}


def test_300_simultaneous_subscribes_on_redis_all_succeed(start_server, sio_client, token,
                                                          redis_url, redis_prefix):
    server = start_server(REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix,
                          RATE_LIMIT_EVENT=GENEROUS, RATE_LIMIT_USER=GENEROUS,
                          NAMESPACES=NAMESPACES)
    clients = [sio_client(server, token=token(f"u{i}")) for i in range(3)]
    replies: list[dict] = []
    done = threading.Event()
    lock = threading.Lock()
    total = 300

    def on_reply(reply: dict) -> None:
        with lock:
            replies.append(reply)
            if len(replies) == total:
                done.set()

    # fire-and-forget with an ack callback: all 300 are in flight before the first reply
    for n in range(total):
        clients[n % 3].client.emit("subscribe", {"channel": f"storm:c{n}"}, callback=on_reply)
    assert done.wait(20), f"only {len(replies)} of {total} replies"
    failures = [r["error"] for r in replies if not r["ok"]]
    assert failures == [], f"{len(failures)} failed, e.g. {failures[:3]}"
    # the pool is bounded: a burst must not open one Redis connection per call
    names = [c.get("name", "") for c in redis_lib.Redis.from_url(redis_url).client_list()]
    ours = [n for n in names if n == f"dihya-broker:{redis_prefix}"]
    assert 0 < len(ours) <= 64
