"""The ``cluster`` scenario of ``make bench`` (issue 14): what a second process costs.

Why: several ``serve`` processes on one Redis scale connections, but messages only if a
process receives nothing it has no client for (interest routing). Three figures, each from
two processes on one Redis:

(a) **foreign traffic**: every client (subscribers and one publisher at a fixed rate) on A,
    none on B; B's CPU seconds / A's over the publishing window (target ≤ 0.02). Run for the
    current code and, in the same run, for the code before interest routing (a ``git
    archive`` of ``--cluster-baseline``, run through ``PYTHONPATH``), so the before/after
    ratio comes from one run on one machine state.
(b) **Redis messages per chat message** in one room whose members are spread over A and B:
    PUBLISH + SPUBLISH calls (``INFO commandstats``, which counts the ones a script makes),
    and the deliveries they cause, counted by a tap client (a pattern subscription to the
    prefix's plain channels and an SSUBSCRIBE of every shard channel that exists once the room
    is joined) times each channel's subscribers (``PUBSUB NUMSUB`` / ``SHARDNUMSUB``), plus
    the bytes on those channels (target ≤ 2 messages).
(c) **fan-out** deliveries/s, two processes each holding half the subscribers vs one holding
    them all (reported; a 2-core machine cannot show linear scale).

Redis is a private ``redis-server`` on a random loopback port, started and stopped here, so
its counters hold this scenario's traffic only (the machine's Redis is shared with other
jobs); ``--cluster-redis URL`` uses another (its counters are then approximate).
"""

from __future__ import annotations

import contextlib
import io
import secrets
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def run_cluster(b: Any, h: SimpleNamespace) -> None:
    """``b``: run.py's ``Bench``; ``h``: the run.py helpers this scenario uses."""
    with redis_for(b, h) as (url, private):
        runs: list[tuple[str, dict[str, str]]] = [("current", {})]
        base = baseline_src(b, h) if "foreign" in b.args.cluster_parts else None
        if base:
            runs.append((b.args.cluster_baseline, {"PYTHONPATH": str(base)}))
        # alternated: current, before, current again when there is time (not in --quick)
        order = runs + (runs[:1] if base and not b.args.quick else [])
        parts = b.args.cluster_parts
        if "foreign" in parts:
            for code, env in order:
                foreign_traffic(b, h, url, code, env)
        if "chat" in parts:
            chat_messages(b, h, url, private)
        if "fanout" in parts:
            fanout_scaling(b, h, url)


# -- Redis ---------------------------------------------------------------------------------

@contextlib.contextmanager
def redis_for(b: Any, h: SimpleNamespace) -> Iterator[tuple[str, bool]]:
    """A private redis-server (``True``) or the ``--cluster-redis`` URL (``False``)."""
    if b.args.cluster_redis or not shutil.which("redis-server"):
        yield (b.args.cluster_redis or h.redis_url), False
        return
    port = h.free_port()
    logfile = b.workdir / f"redis-{port}.log"
    with logfile.open("wb") as fh:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(b.workdir)],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client(url).ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("private redis-server did not start: "
                                       + logfile.read_text()[-500:]) from None
                time.sleep(0.1)
        h.log(f"cluster: private redis-server on port {port}")
        yield url, True
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5)


def publishes(url: str) -> int:
    """PUBLISH + SPUBLISH calls so far, those made inside scripts included."""
    stats = client(url).info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0))
               for c in ("publish", "spublish"))


def cpu_time(pid: int, stat_seconds: float) -> float:
    """CPU seconds of a process: the larger of ``/proc/<pid>/stat`` (every thread, dead ones
    included, in 10 ms clock ticks) and the sum of its live threads' ``schedstat`` (in ns: an
    idle process's few milliseconds are not rounded to 0)."""
    total = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0])
    return max(stat_seconds, total / 1e9)


def baseline_src(b: Any, h: SimpleNamespace) -> Path | None:
    """``src`` of ``--cluster-baseline`` (a commit), extracted with ``git archive``."""
    rev = b.args.cluster_baseline
    if not rev or rev == "none":
        return None
    dest = b.workdir / f"baseline-{rev}"
    try:
        tar = subprocess.run(["git", "archive", rev, "src"], cwd=h.root, capture_output=True,
                             timeout=60, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            tf.extractall(dest, filter="data")
    except (OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
        h.log(f"cluster: no baseline ({rev}): {exc!r}")
        b.record("cluster", "dihya", {"skipped": f"baseline {rev} unavailable"},
                 part="foreign", code=rev)
        return None
    return dest / "src"


# -- (a) foreign traffic -------------------------------------------------------------------

def foreign_traffic(b: Any, h: SimpleNamespace, url: str, code: str,
                    env: dict[str, str]) -> None:
    subs, rate = b.args.cluster_subscribers, b.args.cluster_rate
    prefix = "bench-" + secrets.token_hex(4)
    h.log(f"cluster (a): {code}: {subs} subscribers + 1 publisher at {rate} msg/s on A, "
          f"none on B, {b.args.seconds} s")
    with b.server("dihya", core=0, redis=url, prefix=prefix, env=env) as a, \
            b.server("dihya", core=1, redis=url, prefix=prefix, env=env) as bb:
        window: dict[str, Any] = {}

        def on_phase(msg: dict[str, Any], proc: subprocess.Popen) -> None:
            if msg.get("phase") in ("fixed_start", "fixed_end"):
                window[msg["phase"]] = (time.monotonic(),
                                        cpu_time(a.pid, h.cpu_seconds(a.pid)),
                                        cpu_time(bb.pid, h.cpu_seconds(bb.pid)))

        config = {**h.fanout_config(b, "dihya", [a.url]), "clients": subs, "publishers": 1,
                  "rate": rate, "fixedSeconds": b.args.seconds, "maxSeconds": 0}
        result = b.loadgen(config, [a, bb], on_phase=on_phase)
    extra: dict[str, Any] = {"part": "foreign", "code": code, "subscribers": subs,
                             "rate": rate, "prefix": prefix}
    if "fixed_start" in window and "fixed_end" in window:
        (t0, a0, b0), (t1, a1, b1) = window["fixed_start"], window["fixed_end"]
        cpu_a, cpu_b = a1 - a0, b1 - b0
        published = h.get(result, "fixed", "published") or 0
        result.update({
            "window_s": round(t1 - t0, 3), "cpu_a_s": round(cpu_a, 4),
            "cpu_b_s": round(cpu_b, 4),
            "b_over_a": round(cpu_b / cpu_a, 4) if cpu_a else None,
            "b_us_per_publication": round(cpu_b / published * 1e6, 1) if published else None,
        })
    else:
        extra["invalid"] = "no CPU window (the generator sent no fixed_start/fixed_end)"
    fixed = result.get("fixed") or {}
    if fixed and fixed.get("delivered", 0) < fixed.get("expected", 0):
        extra["invalid"] = (f"A delivered {fixed.get('delivered')} of {fixed.get('expected')}:"
                            " A could not keep up, the ratio's denominator is A saturated")
    b.record("cluster", "dihya", result, **extra)


# -- (b) Redis messages per chat message ---------------------------------------------------

class Tap:
    """Counts the messages (and their bytes) on every channel it listens to."""

    def __init__(self, url: str, prefix: str) -> None:
        self.pubsub = client(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(prefix + "*")
        self.counts: dict[str, list[int]] = {}  # channel → [messages, bytes]
        self.counting = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def listen_shards(self, shards: list[bytes]) -> None:
        if shards:
            self.pubsub.ssubscribe(*shards)

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.pubsub.get_message(timeout=0.2)
            if not msg or msg["type"] not in ("message", "pmessage", "smessage"):
                continue
            if self.counting:
                ch = msg["channel"].decode(errors="replace")
                entry = self.counts.setdefault(ch, [0, 0])
                entry[0] += 1
                entry[1] += len(msg["data"])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.pubsub.close()


def chat_messages(b: Any, h: SimpleNamespace, url: str, private: bool) -> None:
    members, rate = b.args.cluster_members, b.args.cluster_chat_rate
    seconds = min(b.args.seconds, 2.0)
    prefix = "bench-" + secrets.token_hex(4)
    db = h.postgres_url if h.reset_postgres(h.postgres_url) else b.sqlite_url()
    h.log(f"cluster (b): one room of {members} members over A and B, chat:send at {rate} msg/s"
          f" for {seconds} s ({'PostgreSQL' if db == h.postgres_url else 'SQLite'})")
    r = client(url)
    tap = Tap(url, prefix)
    sample: dict[str, Any] = {}

    def on_phase(msg: dict[str, Any], proc: subprocess.Popen) -> None:
        phase = msg.get("phase")
        if phase == "prepared":
            shards = list(r.execute_command("PUBSUB", "SHARDCHANNELS", prefix + "*") or [])
            tap.listen_shards(shards)
            time.sleep(0.3)  # the tap's SSUBSCRIBE confirmed before the clock starts
            sample["rooms"] = msg.get("rooms")
            sample["publishes0"] = publishes(url)
            sample["bytes0"] = r.info("stats").get("total_net_output_bytes")
            tap.counting = True
        elif phase == "measured":
            tap.counting = False
            sample["publishes1"] = publishes(url)
            sample["bytes1"] = r.info("stats").get("total_net_output_bytes")
            sample["subscribers"] = receivers(r, tap)
        if phase in ("prepared", "measured"):
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    try:
        with b.server("dihya", core=0, redis=url, prefix=prefix, database_url=db) as a, \
                b.server("dihya", core=1, redis=url, prefix=prefix, database_url=db) as bb:
            payload = h.chat_payload(h.chat_event(a.url) or {})
            result = b.loadgen({
                "scenario": "chat", "flavor": "dihya", "urls": [a.url, bb.url], "lite": True,
                "clients": members, "rooms": 1, "rate": rate, "seconds": seconds,
                "warmupSeconds": 0, "event": "chat:send", "payload": payload,
                "pushEvent": "chat:message", "hold": True, "settleMs": 1000,
                "createRoom": ["chat:create_room", {"name": "bench __N__",
                                                    "visibility": "public"}],
                "prepare": [["chat:join", {"room_id": "__ROOM__"}]],
                "concurrency": b.args.concurrency}, [a, bb], on_phase=on_phase)
    finally:
        tap.close()
        if db == h.postgres_url:
            h.drop_postgres(h.postgres_url)
    extra: dict[str, Any] = {"part": "chat", "members": members, "rate": rate,
                             "redis": "private" if private else "shared (counts approximate)"}
    sent = result.get("sent") or 0
    if "publishes1" in sample and sent:
        channels = []
        deliveries = 0
        for ch, (n, size) in sorted(tap.counts.items()):
            subs = sample["subscribers"].get(ch, 0)
            deliveries += n * subs
            channels.append({"channel": ch, "messages": n, "bytes": size, "receivers": subs})
        result.update({
            "publishes_per_message": round((sample["publishes1"] - sample["publishes0"]) / sent,
                                           2),
            "deliveries_per_message": round(deliveries / sent, 2),
            "bytes_per_message": round(sum(c["bytes"] for c in channels) / sent),
            "redis_out_bytes_per_message": round((sample["bytes1"] - sample["bytes0"]) / sent),
            "channels": channels,
            "note": "chat:message is one relay per message on the room's topic, received "
                    "only by the processes holding a member's connection",
        })
    else:
        extra["invalid"] = "no Redis sample (the generator did not reach its hold points)"
    b.record("cluster", "dihya", result, **extra)


def receivers(r: Any, tap: Tap) -> dict[str, int]:
    """Subscribers of each channel the tap saw, the tap itself not counted (its plain
    channels come through a pattern, which NUMSUB does not count; its shards it SSUBSCRIBEs)."""
    plain = [ch for ch in tap.counts if ch.encode() not in tap.pubsub.shard_channels]
    shard = [ch for ch in tap.counts if ch.encode() in tap.pubsub.shard_channels]
    out: dict[str, int] = {}
    if plain:
        reply = r.execute_command("PUBSUB", "NUMSUB", *plain)
        out.update({k.decode(): int(v) for k, v in zip(reply[::2], reply[1::2], strict=True)})
    if shard:
        reply = r.execute_command("PUBSUB", "SHARDNUMSUB", *shard)
        out.update({k.decode(): int(v) - 1 for k, v in zip(reply[::2], reply[1::2],
                                                           strict=True)})
    return out


# -- (c) fan-out on one process vs two -----------------------------------------------------

def fanout_scaling(b: Any, h: SimpleNamespace, url: str) -> None:
    subs = b.args.subscribers
    n = h.cores()
    prefix = "bench-" + secrets.token_hex(4)
    h.log(f"cluster (c): fan-out, {subs} subscribers on one process")
    with b.server("dihya", core=0, redis=url, prefix=prefix + "a") as srv:
        one = b.loadgen(h.fanout_config(b, "dihya", [srv.url]), [srv])
    b.record("cluster", "dihya", one, part="fanout", processes=1, subscribers=subs)
    h.log(f"cluster (c): fan-out, {subs} subscribers split over two processes")
    with b.server("dihya", core=0, redis=url, prefix=prefix + "b") as s1, \
            b.server("dihya", core=1 if n >= 2 else 0, redis=url, prefix=prefix + "b") as s2:
        two = b.loadgen(h.fanout_config(b, "dihya", [s1.url, s2.url]), [s1, s2],
                        core=2 if n >= 3 else None)
    extra: dict[str, Any] = {"part": "fanout", "processes": 2, "subscribers": subs}
    if n < 3:
        extra["caveat"] = (f"{n} cores: the generator shares a core with the second server, "
                           "so two processes cannot show linear scale here")
    b.record("cluster", "dihya", two, **extra)
