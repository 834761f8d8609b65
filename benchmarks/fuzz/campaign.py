"""One fuzzing campaign: fuzz workers and bystanders against one real server, then a report.

Workers (threads, one raw connection each) draw cases from :mod:`.payloads` and :mod:`.yjs`
and record every reply by error code. Bystanders make acked ``whoami`` calls throughout and
record their latency, timeouts and disconnects. A monitor scans the server's output for
tracebacks and ``ERROR`` records, pairs each with the payloads sent just before it (after the
campaign, those are replayed one by one to find the one that reproduces it), and
samples the server's RSS.
"""

from __future__ import annotations

import collections
import contextlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import yjs
from .bystanders import Bystanders
from .payloads import FRAME_LIMIT, Case, Context, Fuzz, fuzz_events
from .server import Serve, exception_of, logged_at, signature
from .wire import Closed, SioConn, Timeout, connect

ROLES = (("user",), ("admin",), ("moderator",), ("user",))
KIND_WEIGHTS = {"schema": 60, "raw": 12, "binary": 10, "yjs": 18}
PROBE_TIMEOUT = 0.5
MAX_RESTARTS = 3  # a server that dies more often ends the campaign
AFTER_PROBE = 0.5  # seconds to wait for acks once a later probe was answered


@dataclass
class Stats:
    """Shared counters (each update under one lock: the GIL makes this cheap)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    payloads: int = 0
    by_kind: collections.Counter = field(default_factory=collections.Counter)
    replies: collections.Counter = field(default_factory=collections.Counter)
    by_event: dict[str, collections.Counter] = field(default_factory=dict)
    reconnects: int = 0
    internal: list[dict[str, Any]] = field(default_factory=list)
    internal_count: int = 0
    odd: list[dict[str, Any]] = field(default_factory=list)
    recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=8192))
    server_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    error_count: int = 0
    unexpected_closes: list[dict[str, Any]] = field(default_factory=list)
    no_replies: list[dict[str, Any]] = field(default_factory=list)
    generator_errors: collections.Counter = field(default_factory=collections.Counter)

    def sent(self, case: Case, who: tuple[str, tuple[str, ...]]) -> None:
        with self.lock:
            self.payloads += 1
            self.by_kind[case.kind] += 1
            self.recent.append((time.time(), case, who))

    def outcome(self, case: Case, outcome: str) -> None:
        with self.lock:
            self.replies[outcome] += 1
            key = case.event if case.kind == "schema" and case.event else case.kind
            self.by_event.setdefault(key[:40], collections.Counter())[outcome] += 1


def send_case(conn: SioConn, case: Case) -> None:
    """Send one case on its own (a replay), then a probe; Yjs cases join their doc first."""
    if case.kind == "yjs" and isinstance(case.data, dict) and case.event != "doc:join":
        conn.call("doc:join", {"doc_id": case.data.get("doc_id")}, timeout=2)
    if case.raw:
        for f in case.raw:
            conn.send_raw(f)
    elif case.body is not None:
        conn.send_text(f"42{conn.next_ack}{case.body}")
        conn.next_ack += 1
    else:
        conn.send_event(case.event or "", case.data, ack=case.ack)
    conn.call("whoami", timeout=0.5)


class Worker(threading.Thread):
    """One fuzzing connection; reconnects whenever the server closes it."""

    def __init__(self, idx: int, camp: Campaign) -> None:
        super().__init__(name=f"fuzz-{idx}", daemon=True)
        self.idx = idx
        self.camp = camp
        self.rng = random.Random(camp.seed * 1000 + idx)
        self.user = f"fuzz-{idx}"
        self.roles = ROLES[idx % len(ROLES)]
        self.ctx = Context(self.user, [f"fuzz-{i}" for i in range(camp.workers)] + ["nobody"])
        self.fuzz = Fuzz(self.rng, self.ctx, camp.events)
        self.conn: SioConn | None = None
        self.doc_seq = 0
        self.seed_client = 5000 + idx
        self.doc: str | None = None
        self.previous = ""

    # -- connection
    def ensure(self) -> SioConn:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        if self.conn is not None:
            self.conn.close()
            with self.camp.stats.lock:
                self.camp.stats.reconnects += 1
        srv = self.camp.server
        self.conn = connect("127.0.0.1", srv.port, srv.token(self.user, self.roles))
        self.doc = None
        self.previous = "(new connection)"
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def run(self) -> None:
        camp = self.camp
        kinds, weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
        while not camp.stop.is_set():
            try:
                conn = self.ensure()
            except (Closed, Timeout, OSError):
                time.sleep(0.2)
                continue
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "schema" and self.camp.batch > 1:
                self.schema_batch(conn)
                continue
            try:
                case = self.yjs_case(conn) if kind == "yjs" else getattr(self.fuzz,
                                                                         kind + "_case")()
            except (Closed, Timeout, OSError):
                self.drop()
                continue
            except Exception as exc:  # noqa: BLE001 - a generator bug must not end the campaign
                with camp.stats.lock:
                    camp.stats.generator_errors[repr(exc)[:200]] += 1
                continue
            self.execute(conn, case)

    def schema_batch(self, conn: SioConn) -> None:
        """Several schema cases in flight at once (acked, none expected to close the
        connection); the rest one by one. Pipelining keeps the server busy while replies
        travel, which is what gets the payload rate up on a small machine."""
        batch: list[Case] = []
        for _ in range(self.camp.batch):
            try:
                case = self.fuzz.schema_case()
            except Exception as exc:  # noqa: BLE001 - a generator bug must not end the campaign
                with self.camp.stats.lock:
                    self.camp.stats.generator_errors[repr(exc)[:200]] += 1
                continue
            if case.ack and not case.expect_close and not case.raw:
                batch.append(case)
            else:
                self.execute(conn, case)
                if conn.closed:
                    return
        if not batch:
            return
        stats = self.camp.stats
        pending: dict[int, Case] = {}
        try:
            for case in batch:
                stats.sent(case, (self.user, self.roles))
                if case.body is not None:
                    ack_id = conn.next_ack
                    conn.next_ack += 1
                    conn.send_text(f"42{ack_id}{case.body}")
                else:
                    ack_id = conn.send_event(case.event or "", case.data)
                assert ack_id is not None
                pending[ack_id] = case
            # a probe after the batch: the server parses packets in order, so once the probe
            # is answered, a packet it dropped (no ack ever) is not worth waiting long for
            probe = conn.send_event("whoami")
            deadline = time.monotonic() + max(c.timeout for c in batch)
            while pending:
                pkt = conn.recv_packet(deadline)
                if pkt.type == 3 and pkt.ack_id == probe:
                    deadline = min(deadline, time.monotonic() + AFTER_PROBE)
                elif pkt.type in (3, 6) and pkt.ack_id in pending:
                    case = pending.pop(pkt.ack_id)
                    reply = pkt.data[0] if isinstance(pkt.data, list) and pkt.data else pkt.data
                    stats.outcome(case, self.classify(case, reply))
                    if isinstance(reply, dict) and reply.get("ok"):
                        self.ctx.remember(reply.get("data"))
        except (Closed, OSError) as exc:
            too_big = "1009" in str(exc)  # a frame over the limit: the documented answer
            for case in pending.values():
                stats.outcome(case, "closed_too_big" if too_big else "closed_unexpectedly")
                if too_big:
                    continue
                with stats.lock:
                    if len(stats.unexpected_closes) < 20:
                        stats.unexpected_closes.append(
                            {"label": case.label + " (in a batch)", "wire": case.wire(200),
                             "how": str(exc), "previous_on_this_connection": self.previous})
            self.drop()
        except Timeout:
            for case in pending.values():
                stats.outcome(case, "no_reply")
                with stats.lock:
                    if len(stats.no_replies) < 20:
                        stats.no_replies.append({"label": case.label, "wire": case.wire(200)})
            self.drop()
        self.previous = f"[schema] batch of {len(batch)}, last {batch[-1].label}"

    def execute(self, conn: SioConn, case: Case) -> None:
        stats = self.camp.stats
        stats.sent(case, (self.user, self.roles))
        try:
            if case.raw:
                for f in case.raw:
                    conn.send_raw(f)
                reply = conn.call("whoami", timeout=min(PROBE_TIMEOUT, case.timeout))
                outcome = "probe_ok" if isinstance(reply, dict) and reply.get("ok") else \
                    self.classify(case, reply)
            elif case.body is not None:
                ack_id = conn.next_ack
                conn.next_ack += 1
                conn.send_text(f"42{ack_id}{case.body}")
                reply = conn.wait_ack(ack_id, case.timeout)
                outcome = self.classify(case, reply)
            else:
                ack_id = conn.send_event(case.event or "", case.data, ack=case.ack)
                if ack_id is None:
                    reply = conn.call("whoami", timeout=PROBE_TIMEOUT)
                    outcome = "no_ack:" + self.classify(case, reply)
                else:
                    reply = conn.wait_ack(ack_id, case.timeout)
                    outcome = self.classify(case, reply)
                    if isinstance(reply, dict) and reply.get("ok"):
                        self.ctx.remember(reply.get("data"))
        except Closed as exc:
            expected = case.expect_close or "1009" in str(exc)  # 1009: over the frame limit
            outcome = "closed" if expected else "closed_unexpectedly"
            if not expected:
                with stats.lock:
                    if len(stats.unexpected_closes) < 20:
                        stats.unexpected_closes.append(
                            {"label": case.label, "wire": case.wire(200), "how": str(exc),
                             "previous_on_this_connection": self.previous})
            self.drop()
        except Timeout:
            outcome = "no_reply"
            if case.kind in ("schema", "yjs") and case.ack:
                with stats.lock:
                    if len(stats.no_replies) < 20:
                        stats.no_replies.append({"label": case.label, "wire": case.wire(200)})
            self.drop()
        except OSError:
            outcome = "socket_error"
            self.drop()
        if case.kind in ("raw", "binary"):
            self.drop()  # a fresh connection for the next case: no state left behind
        self.previous = f"[{case.kind}] {case.label} -> {outcome}"
        stats.outcome(case, outcome)

    def classify(self, case: Case, reply: Any) -> str:
        stats = self.camp.stats
        if isinstance(reply, dict) and reply.get("ok") is True:
            return "ok"
        if isinstance(reply, dict) and reply.get("ok") is False and isinstance(
                reply.get("error"), dict):
            code = str(reply["error"].get("code"))
            if code == "internal":
                with stats.lock:
                    stats.internal_count += 1
                    if len(stats.internal) < 40:
                        stats.internal.append({"label": case.label, "wire": case.wire(),
                                               "reply": json.dumps(reply)[:300]})
            return code
        with stats.lock:
            if len(stats.odd) < 20:
                stats.odd.append({"label": case.label, "wire": case.wire(),
                                  "reply": repr(reply)[:300]})
        return "not_an_envelope"

    # -- Yjs
    def yjs_case(self, conn: SioConn) -> Case:
        """A document of this worker, joined and seeded with ``hello`` by a known client id
        (so that updates can target its items), then one adversarial update."""
        r = self.rng
        if self.doc is None or r.random() < 0.01:
            self.doc_seq += 1
            self.doc = f"fuzz-{self.idx}-{self.doc_seq}-{self.camp.seed}"
            reply = conn.call("doc:join", {"doc_id": self.doc}, timeout=4)
            if isinstance(reply, dict) and reply.get("ok"):
                conn.call("doc:update", {"doc_id": self.doc,
                                         "update": yjs.seed_text(self.seed_client)}, timeout=4)
            self.ctx.docs = [self.doc]
        doc = self.doc
        pick = r.choices(range(12), [8, 3, 1, 6, 6, 6, 6, 4, 3, 6, 4, 4])[0]
        if pick == 0:
            n = r.choice([1, 10, 100])
            update, label = yjs.many_clients(n, self.seed_client), f"{n} client ids at start"
        elif pick == 1:
            update, label = yjs.many_clients(1000, self.seed_client), "1000 client ids at start"
        elif pick == 2:
            update, label = yjs.many_clients(5200, self.seed_client), "5200 client ids at start"
        elif pick == 3:
            update = yjs.child_of_text_item(self.seed_client, r.randint(0, 4),
                                            client=r.randint(10, 2**31))
            label = "item whose parent is a text item"
        elif pick == 4:
            depth = r.choice([10, 100, 1000])
            update, label = yjs.deep_nesting(depth, r.choice(["array", "map"]),
                                             r.randint(1, 2**31)), f"nesting {depth}"
        elif pick == 5:
            update, label = yjs.garbage(r, r.choice([0, 1, 2, 13, 100, 4000])), "garbage"
        elif pick == 6:
            update, label = yjs.truncated(yjs.many_clients(10, self.seed_client), r), "truncated"
        elif pick == 7:
            update = yjs.bit_flipped(yjs.many_clients(10, self.seed_client), r)
            label = "bit-flipped"
        elif pick == 8:
            update, label = yjs.huge_counts(), "huge counts"
        elif pick == 9:
            update = yjs.big_text(r.choice([1000, 60000, 70000]), r.randint(1, 2**31))
            label = f"text of {len(update)} bytes"
        elif pick == 10:
            kind = r.choice([0, 1, 2, 3, 7, 255])
            body = r.choice([yjs.garbage(r, 20), yjs.seed_text(r.randint(1, 2**31)), b""])
            msg = yjs.sync_message(kind, body) if r.random() < 0.8 else yjs.garbage(r, 8)
            return Case("yjs", f"doc:sync message type {kind}", "doc:sync",
                        {"doc_id": doc, "message": msg}, timeout=4)
        else:
            sv = r.choice([yjs.garbage(r, 10), yjs.sync_message(0, yjs.garbage(r, 6)),
                           yjs.sync_message(0, b"\xff" * 12), yjs.sync_message(1, b"")])
            return Case("yjs", "doc:join with a hostile sync_step1", "doc:join",
                        {"doc_id": doc, "sync_step1": sv}, timeout=4)
        big = len(update) > FRAME_LIMIT - 200  # over the frame limit: a close is the answer
        if r.random() < 0.3:
            return Case("yjs", f"doc:sync step 2: {label}", "doc:sync",
                        {"doc_id": doc, "message": yjs.sync_message(1, update)}, timeout=4,
                        expect_close=big)
        return Case("yjs", f"doc:update: {label}", "doc:update",
                    {"doc_id": doc, "update": update}, timeout=4, expect_close=big)


@dataclass
class Campaign:
    server: Serve
    seconds: float = 60.0
    workers: int = 8
    bystanders: int = 4
    seed: int = 1
    events: dict[str, dict[str, Any] | None] = field(default_factory=fuzz_events)
    stats: Stats = field(default_factory=Stats)
    stop: threading.Event = field(default_factory=threading.Event)
    t0: float = 0.0
    rss: dict[str, int] = field(default_factory=dict)
    server_died: str | None = None
    server_cpu: float = 0.0
    cpu: int | None = None  # the core of the bystanders' process
    batch: int = 4  # schema cases in flight per connection
    bystander: dict[str, Any] = field(default_factory=dict)
    replay_seconds: float = 10.0
    crash: dict[str, Any] = field(default_factory=dict)
    deaths: list[str] = field(default_factory=list)
    corpus: dict[str, str] = field(default_factory=dict)
    crash_candidates: list[tuple[Case, tuple[str, tuple[str, ...]]]] = field(
        default_factory=list)
    candidates: dict[str, list[tuple[Case, tuple[str, tuple[str, ...]]]]] = field(
        default_factory=dict)

    def monitor(self) -> None:
        """Server errors grouped by signature (each with the payloads sent in the second
        before it was seen), RSS, liveness: a dead server is restarted (same port and
        database, at most ``MAX_RESTARTS`` times) and the campaign goes on."""
        self.collect_errors()
        rss = self.server.rss_kb()
        self.rss["max"] = max(self.rss.get("max", 0), rss)
        if self.server.alive:
            return
        self.collect_errors()  # the dying words
        code = self.server.proc.returncode if self.server.proc else "?"
        self.deaths.append(f"{time.monotonic() - self.t0:.0f} s: exit code {code}")
        if self.server_died is None:
            self.server_died = f"exit code {code}"
            with self.stats.lock:  # what was sent last
                self.crash_candidates = [(c, w) for _, c, w in self.stats.recent][-40:]
            self.crash = {"log_tail": self.server.output()[-2500:],
                          "payloads_just_before": [f"[{c.kind}] {c.label}: {c.wire(300)}"
                                                   for c, _ in self.crash_candidates[-8:]]}
        if len(self.deaths) > MAX_RESTARTS:
            self.stop.set()
            return
        try:
            self.server.start()
        except (RuntimeError, OSError) as exc:
            self.deaths.append(f"restart failed: {exc!r}"[:300])
            self.stop.set()

    def collect_errors(self) -> None:
        for err in self.server.new_errors():
            sig = signature(err)
            when = logged_at(err) or time.time()
            with self.stats.lock:
                self.stats.error_count += 1
                group = self.stats.server_errors.setdefault(sig, {"count": 0})
                group["count"] += 1
                if "log" not in group:
                    near = [(t, c, w) for t, c, w in self.stats.recent
                            if when - 1.0 <= t <= when + 0.05]
                    # the likeliest first: closest in time, hostile kinds before plain ones
                    near.sort(key=lambda x: (x[1].kind == "schema" and x[1].body is None,
                                             when - x[0]))
                    group["log"] = err[-2500:]
                    group["exception"] = exception_of(err)
                    group["payloads_just_before"] = [f"[{c.kind}] {c.label}: {c.wire(200)}"
                                                     for _, c, _ in near[:4]]
                    self.candidates[sig] = [(c, w) for _, c, w in near[:12]]

    def run(self) -> dict[str, Any]:
        self.server.new_errors()  # start-up output is not a finding
        self.rss["start"] = self.server.rss_kb()
        cpu0 = self.server.cpu_seconds()
        self.t0 = time.monotonic()
        pool = Bystanders(self.server.port, self.server.secret, self.bystanders, cpu=self.cpu)
        pool.start()
        threads = [Worker(i, self) for i in range(self.workers)]
        for t in threads:
            t.start()
        deadline = self.t0 + self.seconds
        while time.monotonic() < deadline and not self.stop.is_set():
            self.stop.wait(0.5)
            self.monitor()
        elapsed = time.monotonic() - self.t0
        if self.server.alive and not self.deaths:
            self.server_cpu = round((self.server.cpu_seconds() - cpu0) / elapsed, 2)
        self.stop.set()
        self.bystander = pool.stop()
        for t in threads:
            t.join(timeout=12)
        time.sleep(1.0)  # late tracebacks
        self.monitor()
        self.rss["end"] = self.server.rss_kb()
        # one budget for both replays, a crash first: it matters most
        end = time.monotonic() + self.replay_seconds
        if self.server_died and self.replay_seconds > 0:
            self.replay_crash(end - time.monotonic())
        if self.server.alive and end > time.monotonic():
            self.replay(end - time.monotonic())
        self.regression_corpus()
        return self.report(elapsed)

    def regression_corpus(self) -> None:
        """Payloads that once crashed the server, each on a fresh connection and document,
        once per campaign (at the end, so that a crash does not cut the campaign short)."""
        doc = f"corpus-{self.seed}-{int(time.time())}"
        cases = {
            "yjs: update that panics yrs on a seeded doc (doc:update)": [
                ("doc:join", {"doc_id": doc}),
                ("doc:update", {"doc_id": doc,
                                "update": yjs.seed_text(yjs.PANIC_SEED_CLIENT)}),
                ("doc:update", {"doc_id": doc, "update": yjs.PANICS_ON_SEEDED_DOC})],
            "yjs: the same as a sync step 2 (doc:sync)": [
                ("doc:join", {"doc_id": doc + "-s"}),
                ("doc:update", {"doc_id": doc + "-s",
                                "update": yjs.seed_text(yjs.PANIC_SEED_CLIENT)}),
                ("doc:sync", {"doc_id": doc + "-s",
                              "message": yjs.sync_message(1, yjs.PANICS_ON_SEEDED_DOC)})],
        }
        for name, calls in cases.items():
            try:
                if not self.server.alive:
                    self.server.start()
                conn = connect("127.0.0.1", self.server.port, self.server.token("corpus"),
                               timeout=3)
                for event, data in calls:
                    conn.call(event, data, timeout=3)
                conn.close()
            except (Closed, Timeout, OSError, RuntimeError):
                pass
            time.sleep(0.3)
            survived = self.server.alive
            self.corpus[name] = "survived" if survived else "CRASHED the server"
            if not survived:
                self.collect_errors()
                code = self.server.proc.returncode if self.server.proc else "?"
                self.deaths.append(f"regression corpus [{name}]: exit code {code}")

    def replay_crash(self, budget: float) -> None:
        """The server died: restart it (same database) and replay the last payloads one by
        one, latest first, until one kills it again."""
        end = time.monotonic() + budget
        tried = 0
        for case, who in reversed(self.crash_candidates):
            if time.monotonic() > end:
                break
            try:
                if not self.server.alive:
                    self.server.start()
                conn = connect("127.0.0.1", self.server.port, self.server.token(who[0], who[1]),
                               timeout=2)
            except (Closed, Timeout, OSError, RuntimeError):
                continue
            tried += 1
            with contextlib.suppress(Closed, Timeout, OSError):
                send_case(conn, case)
            conn.close()
            time.sleep(0.3)
            if not self.server.alive:
                self.crash["reproduced_by"] = (f"[{case.kind}] {case.label} (as {who[0]}): "
                                               f"{case.wire(800)}")
                break
        self.crash["replayed"] = tried

    def replay(self, budget: float) -> None:
        """Find which payload causes each kind of server error: replay the payloads sent
        just before its first occurrence, one by one on a fresh connection of the same user,
        likeliest first, until the same exception shows up in the log (within ``budget`` s)."""
        end = time.monotonic() + budget
        for sig, group in sorted(self.stats.server_errors.items(),
                                 key=lambda kv: -kv[1]["count"]):
            for case, who in self.candidates.get(sig, []):
                if time.monotonic() > end:
                    return
                try:
                    conn = connect("127.0.0.1", self.server.port,
                                   self.server.token(who[0], who[1]), timeout=2)
                except (Closed, Timeout, OSError):
                    continue
                with contextlib.suppress(Closed, Timeout, OSError):
                    send_case(conn, case)
                conn.close()
                time.sleep(0.05)
                want = group.get("exception") or ""
                if any((exception_of(e) == want) if want else (signature(e) == sig)
                       for e in self.server.new_errors()):
                    group["reproduced_by"] = (f"[{case.kind}] {case.label} (as {who[0]}, "
                                              f"roles {','.join(who[1])}): {case.wire(600)}")
                    break

    def report(self, elapsed: float) -> dict[str, Any]:
        s = self.stats
        failures = self.bystander.get("failures", {})
        verdict = []
        if s.error_count:
            verdict.append(f"{s.error_count} server error(s) in the log, "
                           f"{len(s.server_errors)} distinct")
        if s.internal_count:
            verdict.append(f"{s.internal_count} 'internal' replies")
        for what, n in failures.items():
            if what != "timeout":
                verdict.append(f"{n} bystander failure(s): {what}")
        if self.deaths:
            verdict.append(f"server died {len(self.deaths)} time(s) ({'; '.join(self.deaths)})")
        return {
            "seconds": round(elapsed, 1),
            "workers": self.workers,
            "bystanders": self.bystanders,
            "seed": self.seed,
            "payloads": s.payloads,
            "payloads_per_s": round(s.payloads / elapsed, 1) if elapsed else 0,
            "by_kind": dict(s.by_kind),
            "replies": dict(s.replies.most_common()),
            "replies_by_event": {k: dict(v) for k, v in sorted(s.by_event.items())},
            "reconnects": s.reconnects,
            "generator_errors": dict(s.generator_errors),
            "server_errors": s.error_count,
            "server_error_kinds": [{"signature": k, **v} for k, v in sorted(
                s.server_errors.items(), key=lambda kv: -kv[1]["count"])],
            "internal_replies": s.internal_count,
            "internal_examples": s.internal,
            "not_an_envelope": s.odd,
            "unexpected_closes": s.unexpected_closes,
            "acked_events_without_reply": s.no_replies,
            "bystander": self.bystander,
            "rss_kb": {**self.rss, "growth": (self.rss.get("end") or self.rss.get("max", 0))
                       - self.rss.get("start", 0)},
            "server_alive": not self.deaths,
            "server_death": self.crash,
            "server_deaths": self.deaths,
            "regression_corpus": self.corpus,
            "server_cpu": self.server_cpu,
            "failed": verdict,
        }


def render(report: dict[str, Any]) -> str:
    """The human-readable report (the JSON has everything)."""
    b, rss = report["bystander"], report["rss_kb"]
    out = [
        f"fuzz: {report['payloads']:,} payloads in {report['seconds']} s "
        f"({report['payloads_per_s']:,}/s; {report['workers']} workers, "
        f"{report['bystanders']} bystanders, seed {report['seed']})",
        "  by kind: " + ", ".join(f"{k} {v:,}" for k, v in report["by_kind"].items()),
        "  replies: " + ", ".join(f"{k} {v:,}" for k, v in report["replies"].items()),
        f"  reconnects: {report['reconnects']:,}; server CPU {report['server_cpu']:.0%} of a core",
        f"  bystanders: {b['calls']:,} whoami calls, p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms,"
        f" max {b['max_ms']} ms, failures {b['failures'] or 0}",
        f"  server RSS: {rss.get('start', 0) / 1024:.1f} MB → {rss.get('end', 0) / 1024:.1f} MB"
        f" (max {rss.get('max', 0) / 1024:.1f} MB, growth {rss['growth'] / 1024:+.1f} MB)",
        f"  server errors in the log: {report['server_errors']} "
        f"({len(report['server_error_kinds'])} distinct); 'internal' replies: "
        f"{report['internal_replies']}; server alive: {report['server_alive']}",
    ]
    for ex in b["examples"][:10]:
        out.append(f"  bystander failure: {ex}")
    for i, err in enumerate(report["server_error_kinds"][:25], 1):
        out.append(f"\n--- server error {i} (x{err['count']}): {err['signature']}\n"
                   f"{err['log'][-700:]}")
        if err.get("reproduced_by"):
            out.append(f"    REPRODUCED BY (replayed alone): {err['reproduced_by']}")
        else:
            for p in err.get("payloads_just_before", []):
                out.append(f"    not reproduced alone; sent just before: {p}")
    for ex in report["internal_examples"][:15]:
        out.append(f"\n--- 'internal' reply to [{ex['label']}]: {ex['reply']}\n    sent: "
                   f"{ex['wire']}")
    for ex in report["unexpected_closes"][:8]:
        out.append(f"\n--- connection closed after [{ex['label']}] ({ex['how']}); before it on "
                   f"that connection: {ex['previous_on_this_connection']}\n    sent: {ex['wire']}")
    for ex in report["acked_events_without_reply"][:8]:
        out.append(f"\n--- no ack within its timeout for [{ex['label']}]\n    sent: {ex['wire']}")
    for ex in report["not_an_envelope"][:5]:
        out.append(f"\n--- reply that is not an envelope to [{ex['label']}]: {ex['reply']}\n"
                   f"    sent: {ex['wire']}")
    for name, verdict in report.get("regression_corpus", {}).items():
        out.append(f"  regression corpus: {name}: {verdict}")
    death = report.get("server_death") or {}
    if death:
        out.append(f"\n--- THE SERVER DIED; its log ended with:\n{death['log_tail'][-1500:]}")
        if death.get("reproduced_by"):
            out.append(f"    CRASH REPRODUCED BY (replayed alone on a restarted server): "
                       f"{death['reproduced_by']}")
        else:
            out.append(f"    not reproduced by replaying {death.get('replayed', 0)} payloads "
                       "alone; the last ones sent:")
            for p in death.get("payloads_just_before", []):
                out.append(f"    {p}")
    out.append("\nFAILED: " + "; ".join(report["failed"]) if report["failed"] else "\nPASSED")
    # payloads hold lone surrogates and control bytes: print them escaped
    return "\n".join(out).encode("utf-8", "backslashreplace").decode("utf-8")
