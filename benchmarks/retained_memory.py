"""Retained memory after one client's publishes (issue 12, finding 5), reproducibly.

Publishes N payloads of SIZE bytes on one chat channel, each with its own idempotency key,
through the same service path as the ``publish`` event (rate limits do not apply here: the
point is what the server *keeps* once they are accepted), then prints what stays allocated:

    .venv/bin/python benchmarks/retained_memory.py                 # memory broker
    .venv/bin/python benchmarks/retained_memory.py --redis redis://127.0.0.1:6379/0

With ``--channels N`` the publishes are spread over N chat channels (each under its own
``MAX_HISTORY_BYTES_PER_CHANNEL``), which is what ``DIHYA_RT_MAX_HISTORY_BYTES`` bounds;
``--max-history-bytes`` sets that budget for the run:

    .venv/bin/python benchmarks/retained_memory.py --count 3000 --channels 300 \
        --max-history-bytes 67108864

Reports Python heap growth (tracemalloc), the process's RSS growth, and with ``--redis`` the
growth of Redis's ``used_memory``. Before issue 12 each idempotency entry held the whole
publication for ``DIHYA_RT_IDEMPOTENCY_TTL`` (5 min): about N x SIZE.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import tracemalloc
import uuid
from pathlib import Path
from typing import Any


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=60_000)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--max-history-bytes", type=int, default=None,
                        help="DIHYA_RT_MAX_HISTORY_BYTES for this run (default: the setting's)")
    parser.add_argument("--redis", default=None, help="a Redis URL: measure the Redis broker")
    args = parser.parse_args()

    from dihya_realtime.realtime import Realtime

    budget: dict[str, Any] = {}
    if args.max_history_bytes is not None:
        budget["max_history_bytes"] = args.max_history_bytes
    tmp = tempfile.mkdtemp()
    prefix = f"dihya-mem-{uuid.uuid4().hex[:8]}"
    rt = Realtime(jwt_secret="x" * 40, async_mode="threading", redis_url=args.redis,
                  redis_prefix=prefix, database_url=f"sqlite:///{tmp}/m.db",
                  audit_log="off", audit_db=False, **budget)
    refs = [rt.channels.resolve(f"chat:general-{c}") for c in range(args.channels)]
    redis: Any = None
    if args.redis:
        import redis as redis_py

        redis = redis_py.Redis.from_url(args.redis)
    try:
        gc.collect()
        rss0 = rss_bytes()
        used0 = redis.info("memory")["used_memory"] if redis else 0
        tracemalloc.start()
        heap0 = tracemalloc.get_traced_memory()[0]
        for i in range(args.count):
            data = f"{i:08d}" + "x" * (args.size - 8)  # a new string each time, as from a client
            ref = refs[i % len(refs)]
            rt.channels.publish(ref.channel, data, ref=ref, idempotency_key=f"k-{i}")
            del data
        gc.collect()
        heap = tracemalloc.get_traced_memory()[0] - heap0
        tracemalloc.stop()
        rss = rss_bytes() - rss0
        used = redis.info("memory")["used_memory"] - used0 if redis else 0
        mib = 1024 * 1024
        print(f"published {args.count} x {args.size} B with idempotency keys on "
              f"{args.channels} channel(s) ({'redis' if redis else 'memory'} broker)")
        print(f"python heap retained: {heap / mib:.1f} MiB")
        print(f"process RSS growth:   {rss / mib:.1f} MiB")
        if redis:
            print(f"redis used_memory growth: {used / mib:.1f} MiB")
    finally:
        if redis is not None:
            keys = list(redis.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                redis.delete(*keys)
        rt.close()


if __name__ == "__main__":
    main()
