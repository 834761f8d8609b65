"""``make bench``: measure dihya-realtime against a bare Flask-SocketIO and a Node socket.io
server, in one run, so that every figure is also a ratio.

Each scenario starts fresh servers (on 127.0.0.1 only), drives them with the Node load
generator (``benchmarks/node/loadgen.js``), and appends one JSON line per measurement to
``benchmarks/results/<date>-<commit>.jsonl``; the Markdown table beside it is printed at the end.
On a machine with two or more cores the server under test is pinned to core 0 and the generator
to core 1 (``taskset``). A figure whose generator used more than 90% of its core is marked
invalid: it measured the generator, not the server.

    python benchmarks/run.py                       # everything (a few minutes)
    python benchmarks/run.py --quick               # a smoke run, under a minute
    python benchmarks/run.py --scenario acked --targets dihya,bare --seconds 3
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
NODE_DIR = BENCH / "node"
SCENARIOS = ("idle", "fanout", "acked", "chat", "redis", "cluster", "abuse")
TARGETS = ("dihya", "bare", "node")
# The same two Python servers on simple-websocket instead of gevent-websocket (issue 2:
# "measure both, pick, say why"); not in the default targets.
EXTRA_TARGETS = ("dihya-simplews", "bare-simplews")
HIDE_GEVENT_WEBSOCKET = ("import sys; sys.modules['geventwebsocket'] = None; "
                         "from dihya_realtime.cli import main; sys.exit(main())")
GEN_CPU_LIMIT = 0.9
REDIS_URL = os.environ.get("DIHYA_RT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# A database of its own per run (created, then dropped): two runs at once (CI and a developer,
# say) must not drop each other's tables mid-scenario.
POSTGRES_URL = os.environ.get("DIHYA_RT_BENCH_POSTGRES_URL",
                              f"postgresql+psycopg://postgres@127.0.0.1:5432/dihya_bench_{os.getpid()}")
GENEROUS = json.dumps({"rate": 100000, "burst": 100000})
# Fan-out runs on a `bench` namespace without presence: with presence, each of the 1,000
# subscribes replies with the member list and broadcasts presence:join to everyone already
# there (O(N²) at join time), which measures a join storm, not delivery. `chat` keeps the
# defaults so that the chat and acked scenarios pay for the real policy.
NAMESPACES = json.dumps({
    "chat": {"subscribe": "chat:write", "publish": "chat:write", "presence": True,
             "history": {"size": 200, "ttl": 86400}},
    "bench": {"subscribe": "chat:write", "publish": "chat:write", "presence": False,
              "history": {"size": 200, "ttl": 86400}},
})


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the machine -------------------------------------------------------------------------------

def raise_open_files() -> int:
    """Servers and generator each hold one descriptor per WebSocket (gevent's pywsgi and Node
    both use one; stacks that proxy use two): 10,000 connections need more than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pin(core: int | None) -> list[str]:
    if core is None or cores() < 2 or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(core)]


def commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10).stdout.strip()
        return (rev or "unknown") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB"
    return f"{model}, {cores()} cores{mem}, {platform.system()} {platform.release()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- servers -----------------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen
    logfile: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def dihya_env(self, database_url: str, redis: str | None = None,
                  prefix: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIHYA_RT_")}
        env.update({
            "DIHYA_RT_JWT_SECRET": self.secret,
            "DIHYA_RT_DATABASE_URL": database_url,
            # Audit stays on, as in production: the point is that checks cost little.
            "DIHYA_RT_AUDIT_LOG": str(self.workdir / "audit.jsonl"),
            "DIHYA_RT_RATE_LIMIT_EVENT": GENEROUS,
            "DIHYA_RT_RATE_LIMIT_USER": GENEROUS,
            "DIHYA_RT_RATE_LIMIT_CONNECT_IP": GENEROUS,
            # every client connects from this one address, up to 100 handshakes at once
            "DIHYA_RT_MAX_PENDING_PER_IP": "100000",
            # `publish` declares its own 50/s per connection; the per-event override lifts it
            # `chat:send` its own 5/s: the per-event override lifts both
            "DIHYA_RT_RATE_LIMIT_EVENTS": json.dumps({"publish": json.loads(GENEROUS),
                                                      "chat:send": json.loads(GENEROUS)}),
            "DIHYA_RT_NAMESPACES": NAMESPACES,
        })
        if redis:
            env["DIHYA_RT_REDIS_URL"] = redis
            env["DIHYA_RT_REDIS_PREFIX"] = prefix or "bench"
        # --dihya-env KEY=VALUE: controlled experiments (e.g. one check switched off)
        env.update(self.args.dihya_env)
        return env

    def sqlite_url(self) -> str:
        return f"sqlite:///{self.workdir / 'bench.db'}"

    def start(self, target: str, *, core: int | None = 0, database_url: str | None = None,
              redis: str | None = None, prefix: str | None = None,
              env: dict[str, str] | None = None) -> Server:
        """``env``: extra environment for this dihya server only (e.g. ``PYTHONPATH`` of an
        older version of the code, which the cluster scenario runs beside the current one)."""
        extra_env = env or {}
        port = free_port()
        logfile = self.workdir / f"{target}-{port}.log"
        env = dict(os.environ)
        if target in ("dihya", "dihya-simplews"):
            db = database_url or self.sqlite_url()
            env = {**self.dihya_env(db, redis, prefix), **extra_env}
            subprocess.run([self.args.dihya, "migrate"], env=env, check=True, timeout=120,
                           capture_output=True, cwd=self.workdir)
            serve = [self.args.dihya] if target == "dihya" else [
                sys.executable, "-c", HIDE_GEVENT_WEBSOCKET]
            cmd = [*serve, "serve", "--host", "127.0.0.1", "--port", str(port)]
        elif target in ("bare", "bare-simplews"):
            cmd = [sys.executable, str(BENCH / "bare_server.py"), "--port", str(port),
                   "--ws", "gevent-websocket" if target == "bare" else "simple-websocket"]
        elif target == "node":
            cmd = ["node", str(NODE_DIR / "server.js"), str(port)]
        else:
            raise ValueError(target)
        with logfile.open("wb") as fh:
            proc = subprocess.Popen(pin(core) + cmd, stdout=fh, stderr=subprocess.STDOUT,
                                    env=env, cwd=self.workdir, start_new_session=True)
        server = Server(target, f"http://127.0.0.1:{port}", proc, logfile)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{target} server exited: {logfile.read_text()[-2000:]}")
            if "ready" in logfile.read_text(errors="replace"):
                time.sleep(0.3)
                return server
            time.sleep(0.1)
        server.stop()
        raise RuntimeError(f"{target} server not ready in 30 s: {logfile.read_text()[-2000:]}")

    @contextlib.contextmanager
    def server(self, target: str, **kw: Any) -> Iterator[Server]:
        srv = self.start(target, **kw)
        try:
            yield srv
        finally:
            srv.stop()

    # -- the generator
    def loadgen(self, config: dict[str, Any], servers: list[Server], *, core: int | None = 1,
                on_phase: Any = None) -> dict[str, Any]:
        config = {"secret": self.secret, "timeoutS": self.args.timeout, **config}
        cpu0 = {s.pid: cpu_seconds(s.pid) for s in servers}
        t0 = time.monotonic()
        proc = subprocess.Popen(pin(core) + ["node", str(NODE_DIR / "loadgen.js"),
                                              json.dumps(config)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                cwd=NODE_DIR)
        result: dict[str, Any] = {"error": "no result"}
        try:
            assert proc.stdout is not None and proc.stdin is not None
            for line in proc.stdout:
                msg = json.loads(line)
                if "phase" in msg:
                    if on_phase:
                        on_phase(msg, proc)
                elif "result" in msg:
                    result = msg["result"]
                elif "error" in msg:
                    result = {"error": msg["error"]}
            proc.wait(timeout=self.args.timeout + 10)
        finally:
            if proc.poll() is None:
                proc.kill()
        wall = time.monotonic() - t0
        result["server_cpu"] = round(sum(cpu_seconds(s.pid) - cpu0[s.pid] for s in servers
                                         if s.proc.poll() is None) / wall, 3)
        return result

    def record(self, scenario: str, target: str, result: dict[str, Any], **extra: Any) -> None:
        row = {"scenario": scenario, "target": target, **extra, **result,
               "date": self.meta["date"], "commit": self.meta["commit"],
               "machine": self.meta["machine"], "pinned": self.meta["pinned"]}
        if self.args.dihya_env and target.startswith("dihya"):
            row["dihya_env"] = self.args.dihya_env
        reasons = []
        if "error" in result:
            reasons.append("error: " + str(result["error"])[:300])
        if result.get("join_errors"):
            reasons.append(f"subscribe failed: {result['join_errors']}")
        if result.get("failures") or result.get("connect_failures"):
            reasons.append("connections failed")
        gen = result.get("gen_cpu")
        if isinstance(gen, int | float) and gen > GEN_CPU_LIMIT:
            reasons.append(f"generator saturated ({gen:.0%} of a core)")
        if extra.get("invalid"):
            reasons.append(extra.pop("invalid"))
            row.pop("invalid", None)
        row["valid"] = not reasons
        if reasons:
            row["invalid_reason"] = "; ".join(reasons)
        self.rows.append(row)
        with self.meta["jsonl"].open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        shown = {k: v for k, v in row.items() if k not in ("date", "commit", "machine", "pinned")}
        log(f"  {scenario}/{target} {extra or ''}: " + json.dumps(shown)[:600])


# -- scenarios ---------------------------------------------------------------------------------

def run_idle(b: Bench) -> None:
    for target in b.args.targets:
        for size in b.args.idle_sizes:
            log(f"idle: {target} × {size}")
            with b.server(target) as srv:
                base, base_fds = rss_kb(srv.pid), open_fds(srv.pid)
                sample: dict[str, int] = {}

                def on_phase(msg: dict[str, Any], proc: subprocess.Popen, srv: Server = srv,
                             sample: dict[str, int] = sample) -> None:
                    if msg.get("phase") == "connected":
                        time.sleep(1.0)  # let the last handshakes settle
                        sample["rss"] = rss_kb(srv.pid)
                        sample["fds"] = open_fds(srv.pid)
                        sample["ok"] = msg.get("ok", 0)
                        assert proc.stdin is not None
                        proc.stdin.write("release\n")
                        proc.stdin.flush()

                result = b.loadgen({"scenario": "idle", "flavor": flavor(target),
                                    "urls": [srv.url], "clients": size,
                                    "lite": not b.args.full_client,
                                    "concurrency": b.args.concurrency}, [srv], on_phase=on_phase)
                if sample.get("ok"):
                    result["server_rss_base_kb"] = base
                    result["server_rss_kb"] = sample["rss"]
                    result["rss_per_conn_kb"] = round((sample["rss"] - base) / sample["ok"], 2)
                    result["fds_per_conn"] = round((sample["fds"] - base_fds) / sample["ok"], 2)
                b.record("idle", target, result, size=size)


def flavor(target: str) -> str:
    return "dihya" if target.startswith("dihya") else "bare"


def fanout_config(b: Bench, target: str, urls: list[str]) -> dict[str, Any]:
    return {"scenario": "fanout", "flavor": flavor(target), "urls": urls,
            "lite": not b.args.full_client,
            "clients": b.args.subscribers, "publishers": 20, "rate": 5,
            "fixedSeconds": b.args.seconds, "maxSeconds": b.args.seconds,
            "window": 4, "concurrency": b.args.concurrency,
            "channel": "bench:fanout" if flavor(target) == "dihya" else "bench"}


def run_fanout(b: Bench) -> None:
    for target in b.args.targets:
        log(f"fanout: {target} × {b.args.subscribers} subscribers")
        with b.server(target) as srv:
            result = b.loadgen(fanout_config(b, target, [srv.url]), [srv])
        b.record("fanout", target, result, subscribers=b.args.subscribers)


def run_acked(b: Bench) -> None:
    for target in b.args.targets:
        log(f"acked: {target} × {b.args.acked_clients} clients")
        with b.server(target) as srv:
            result = b.loadgen({"scenario": "acked", "flavor": flavor(target), "urls": [srv.url],
                                "clients": b.args.acked_clients, "seconds": b.args.seconds,
                                "concurrency": b.args.concurrency}, [srv])
        b.record("acked", target, result, clients=b.args.acked_clients,
                 event="publish" if flavor(target) == "dihya" else "echo")


def chat_event(url: str) -> dict[str, Any] | None:
    """The ``chat:send`` payload schema from the server's AsyncAPI document, or None."""
    with urllib.request.urlopen(url + "/asyncapi.json", timeout=10) as resp:
        doc = json.load(resp)
    comps = doc.get("components", {})
    for msg in comps.get("messages", {}).values():
        if msg.get("name") == "chat:send":
            ref = msg.get("payload", {}).get("$ref", "")
            return comps.get("schemas", {}).get(ref.rsplit("/", 1)[-1], {}) or {}
    return None


def chat_payload(schema: dict[str, Any]) -> dict[str, Any]:
    """A small valid ``chat:send`` payload: the room is the one the generator created
    (``__ROOM__``), ``client_msg_id`` a fresh UUID per message (``__UUID__``; the field is
    validated as a UUID, and a repeated one would be an idempotent resend, not a message)."""
    payload: dict[str, Any] = {"room_id": "__ROOM__", "text": "hello __N__",
                               "client_msg_id": "__UUID__"}
    props = schema.get("properties", {})
    missing = [n for n in schema.get("required", []) if n not in payload]
    if missing or (props and not set(payload) <= set(props)):
        raise RuntimeError(f"chat:send's schema changed: required {schema.get('required')}")
    return payload


def count_messages(url: str) -> int | None:
    """Messages persisted by the run (the ack promises the row exists): a cross-check."""
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM chat_messages")).scalar())
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - a cross-check, never fatal
        log(f"chat: could not count messages: {exc!r}")
        return None


def reset_postgres(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    base = url.replace("postgresql+psycopg://", "postgresql://")
    dbname = base.rsplit("/", 1)[1]
    try:
        with psycopg.connect(base.rsplit("/", 1)[0] + "/postgres", autocommit=True,
                             connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{dbname}"')
        return True
    except psycopg.Error as exc:
        log(f"chat: PostgreSQL unavailable: {exc}")
        return False


def drop_postgres(url: str) -> None:
    import psycopg

    base = url.replace("postgresql+psycopg://", "postgresql://")
    with contextlib.suppress(psycopg.Error), psycopg.connect(
            base.rsplit("/", 1)[0] + "/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{base.rsplit("/", 1)[1]}" WITH (FORCE)')


def run_chat(b: Bench) -> None:
    """``chat:send`` at a fixed rate, persisted: one public room created by the first client,
    joined by all (``--chat-rooms N`` spreads the clients over N rooms), a fresh UUID
    ``client_msg_id`` per message; ``chat:send``'s declared 5/s per connection is lifted with
    ``DIHYA_RT_RATE_LIMIT_EVENTS``. Latency is send→ack (the ack follows the commit)."""
    for rooms in b.args.chat_rooms:
        for db in ("sqlite", "postgres"):
            if not run_chat_once(b, db, rooms):
                return


def run_chat_once(b: Bench, db: str, rooms: int) -> bool:
    """One chat measurement; ``False`` when the server has no ``chat:send``."""
    if db == "postgres" and not reset_postgres(POSTGRES_URL):
        b.record("chat", "dihya", {"skipped": "PostgreSQL unavailable"}, database=db)
        return True
    url = b.sqlite_url() if db == "sqlite" else POSTGRES_URL
    if db == "sqlite":
        with contextlib.suppress(FileNotFoundError):
            for suffix in ("", "-wal", "-shm"):
                Path(b.sqlite_url().removeprefix("sqlite:///") + suffix).unlink()
    try:
        with b.server("dihya", database_url=url) as srv:
            schema = chat_event(srv.url)
            if schema is None:
                print("chat: skipped: chat:send not available", flush=True)
                return False
            payload = chat_payload(schema)
            log(f"chat: {db}, {b.args.chat_rate} msg/s over {b.args.acked_clients} clients"
                f" in {rooms} room(s), {b.args.chat_warmup} s warm-up, {b.args.seconds} s")
            result = b.loadgen({
                "scenario": "chat", "flavor": "dihya", "urls": [srv.url],
                "clients": b.args.acked_clients, "rooms": rooms,
                "rate": b.args.chat_rate, "seconds": b.args.seconds,
                "warmupSeconds": b.args.chat_warmup, "event": "chat:send",
                "payload": payload, "pushEvent": "chat:message",
                "createRoom": ["chat:create_room",
                               {"name": "bench __N__", "visibility": "public"}],
                "prepare": [["chat:join", {"room_id": "__ROOM__"}]],
                "concurrency": b.args.concurrency}, [srv])
        result["persisted"] = count_messages(url)
    finally:
        if db == "postgres":
            drop_postgres(POSTGRES_URL)
    b.record("chat", "dihya", result, database=db, rate=b.args.chat_rate, rooms=rooms)
    return True


def redis_alive() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2):
            return True
    except OSError:
        return False


def run_redis(b: Bench) -> None:
    if not redis_alive():
        b.record("redis", "dihya", {"skipped": "Redis unavailable"})
        return
    n = cores()
    prefix = "bench-" + secrets.token_hex(4)
    log(f"redis: one process, {b.args.subscribers} subscribers")
    with b.server("dihya", redis=REDIS_URL, prefix=prefix + "a") as srv:
        one = b.loadgen(fanout_config(b, "dihya", [srv.url]), [srv])
    b.record("redis", "dihya", one, processes=1, subscribers=b.args.subscribers)
    log("redis: two processes, subscribers split across both")
    # Two servers want two cores and the generator a third: with fewer, the generator shares
    # a core and the ratio understates the scaling; the row says so.
    note = None if n >= 3 else f"only {n} cores: the generator shares a core with a server"
    with b.server("dihya", core=0, redis=REDIS_URL, prefix=prefix + "b") as s1, \
            b.server("dihya", core=1 if n >= 2 else 0, redis=REDIS_URL,
                     prefix=prefix + "b") as s2:
        two = b.loadgen(fanout_config(b, "dihya", [s1.url, s2.url]), [s1, s2],
                        core=2 if n >= 3 else None)
    extra: dict[str, Any] = {"processes": 2, "subscribers": b.args.subscribers}
    if note:
        extra["invalid"] = note
    b.record("redis", "dihya", two, **extra)


def run_abuse(b: Bench) -> None:
    """Issue 12's hostile patterns, one at a time, each on a fresh server with production
    defaults (rate limits, frame limit, audit on): 50 bystanders (their own process, on the
    generator's core) make acked ``whoami`` calls while one attacker runs the pattern
    (``fuzz/abuse.py``). Targets: bystander p99 ≤ 50 ms, server RSS growth ≤ 50 MB."""
    from fuzz.abuse import run_pattern  # benchmarks/fuzz, beside this script

    for name in b.args.abuse_patterns:
        log(f"abuse: {name}, {b.args.abuse_bystanders} bystanders, {b.args.abuse_seconds} s")
        env = {k: v for k, v in b.args.dihya_env.items()}
        row = run_pattern(name, b.workdir / f"abuse-{name}", seconds=b.args.abuse_seconds,
                          quick=b.args.quick, bystanders=b.args.abuse_bystanders,
                          server_pin=pin(0), bystander_cpu=1 if pin(1) else None,
                          command=[b.args.dihya], env=env)
        extra: dict[str, Any] = {}
        if row.get("error") or row.get("attacker_error"):
            extra["invalid"] = str(row.get("error") or row.get("attacker_error"))[:200]
        b.record("abuse", "dihya", row, **extra)


def run_cluster(b: Bench) -> None:
    """Issue 14's scenario (``cluster_scenario.py``, beside this script): two processes on
    one Redis, the cost of traffic a process has no client for, Redis messages per chat
    message, fan-out on one process vs two."""
    from types import SimpleNamespace

    from cluster_scenario import run_cluster as run

    if not shutil.which("redis-server") and not redis_alive():
        b.record("cluster", "dihya", {"skipped": "Redis unavailable"})
        return
    run(b, SimpleNamespace(
        root=ROOT, log=log, cores=cores, free_port=free_port, cpu_seconds=cpu_seconds,
        get=_get, fanout_config=fanout_config, chat_event=chat_event,
        chat_payload=chat_payload, reset_postgres=reset_postgres,
        drop_postgres=drop_postgres, postgres_url=POSTGRES_URL, redis_url=REDIS_URL))


RUNNERS = {"idle": run_idle, "fanout": run_fanout, "acked": run_acked, "chat": run_chat,
           "redis": run_redis, "cluster": run_cluster, "abuse": run_abuse}


# -- the report --------------------------------------------------------------------------------

def _get(row: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = row
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return f"{a / b:.2f}×"
    return "–"


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if v < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(b: Bench) -> str:
    rows = b.rows
    lines = [f"# dihya-realtime benchmark — {b.meta['date']}", "",
             f"- commit: `{b.meta['commit']}`", f"- machine: {b.meta['machine']}",
             f"- pinning: {b.meta['pinned']}",
             f"- command: `{b.meta['command']}`", "",
             "| scenario | target | size | figure | p50 ms | p99 ms | failures/errors | "
             "server CPU | gen CPU | valid |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sc, fig, p50, p99, err, size = r["scenario"], "–", None, None, "", ""
        if r.get("skipped"):
            fig = "skipped: " + r["skipped"]
        elif sc == "idle":
            size = r.get("size")
            fig = (f"{_fmt(r.get('connects_per_s'))} connects/s, "
                   f"{_fmt(r.get('rss_per_conn_kb'))} KB RSS/conn")
            if r.get("fds_per_conn") is not None:
                fig += f", {_fmt(r.get('fds_per_conn'))} fds/conn"
            err = f"{r.get('failures', '–')} failed"
        elif sc in ("fanout", "redis"):
            size = f"{r.get('subscribers')} subs" + (f", {r['processes']} proc"
                                                    if "processes" in r else "")
            fig = (f"{_fmt(_get(r, 'max', 'deliveries_per_s'))} deliveries/s (max); "
                   f"5 msg/s: {_get(r, 'fixed', 'delivered')}/{_get(r, 'fixed', 'expected')}")
            p50, p99 = _get(r, "fixed", "p50_ms"), _get(r, "fixed", "p99_ms")
            err = json.dumps(r.get("publish_errors") or {}) if r.get("publish_errors") else "0"
        elif sc == "acked":
            size = f"{r.get('clients')} clients, {r.get('event')}"
            fig = f"{_fmt(r.get('acks_per_s'))} acks/s"
            p50, p99 = r.get("p50_ms"), r.get("p99_ms")
            err = json.dumps(r.get("errors")) if r.get("errors") else "0"
        elif sc == "chat":
            size = (f"{r.get('database')}, {r.get('rate')} msg/s, {r.get('clients')} clients, "
                    f"{r.get('rooms')} room(s)")
            warm = r.get("warmup") or {}
            fig = (f"{_fmt(r.get('acked'))}/{_fmt(r.get('sent'))} acked "
                   f"(+ {_fmt(warm.get('acked'))}/{_fmt(warm.get('sent'))} in warm-up, "
                   f"its p99 {_fmt(warm.get('p99_ms'))} ms), "
                   f"{_fmt(r.get('persisted'))} stored, "
                   f"{_fmt(r.get('pushes_received'))} chat:message pushes received")
            p50, p99 = r.get("p50_ms"), r.get("p99_ms")
            err = json.dumps(r.get("errors")) if r.get("errors") else "0"
        elif sc == "cluster":
            size, fig, p50, p99, err = cluster_cells(r)
        elif sc == "abuse":
            by = r.get("bystander") or {}
            size = f"{r.get('pattern')}, {r.get('bystanders')} bystanders"
            fig = (f"RSS {_fmt(r.get('rss_before_mb'))} → {_fmt(r.get('rss_after_mb'))} MB "
                   f"(max {_fmt(r.get('rss_max_mb'))}, growth {_fmt(r.get('rss_growth_mb'))} MB"
                   f", target ≤ 50); p99 target ≤ 50 ms; {by.get('calls')} calls; attacker: "
                   + json.dumps(r.get("attacker"))[:300].replace("|", "/"))
            p50, p99 = by.get("p50_ms"), by.get("p99_ms")
            err = json.dumps(by.get("failures")) if by.get("failures") else "0"
            if r.get("server_errors"):
                err += f", {r['server_errors']} server errors"
            if r.get("server_alive") is False:
                err += ", SERVER DIED"
        valid = "yes" if r.get("valid") else "NO: " + r.get("invalid_reason", "")
        lines.append(f"| {sc} | {r['target']} | {size} | {fig} | {_fmt(p50)} | {_fmt(p99)} | "
                     f"{err} | {_fmt(r.get('server_cpu'))} | {_fmt(r.get('gen_cpu'))} | "
                     f"{valid} |")
    lines += ["", "## Ratios and targets (same run)", "",
              "| measure | value | target |", "|---|---|---|"]

    def pick(sc: str, target: str, **kw: Any) -> dict[str, Any] | None:
        for r in rows:
            if r["scenario"] == sc and r["target"] == target and all(
                    r.get(k) == v for k, v in kw.items()) and not r.get("skipped"):
                return r
        return None

    fan = {t: _get(pick("fanout", t), "max", "deliveries_per_s") for t in TARGETS}
    ack = {t: _get(pick("acked", t), "acks_per_s") for t in TARGETS}
    def ratio(sc: str, values: dict[str, Any], a: str, b: str) -> str:
        """The ratio, flagged when either row is invalid (e.g. a generator-bound baseline)."""
        text = _ratio(values[a], values[b])
        bad = [t for t in (a, b) if (r := pick(sc, t)) is not None and not r.get("valid")]
        return text + (f" (invalid: {', '.join(bad)} row invalid)" if bad and text != "–"
                       else "")

    lines.append(f"| fan-out deliveries/s, dihya / bare | {ratio('fanout', fan, 'dihya', 'bare')}"
                 " | ≥ 1.0× |")
    lines.append(f"| fan-out deliveries/s, dihya / node | {ratio('fanout', fan, 'dihya', 'node')}"
                 " | ≥ 0.9× |")
    lines.append(f"| acked publish/s, dihya / bare echo | {ratio('acked', ack, 'dihya', 'bare')}"
                 " | ≥ 1.0× |")
    lines.append(f"| acked publish/s, dihya / node echo | {ratio('acked', ack, 'dihya', 'node')}"
                 " | – |")
    fd = pick("fanout", "dihya")
    lines.append(f"| fan-out p99 at 5 msg/s × {_get(fd, 'subscribers')} subscribers | "
                 f"{_fmt(_get(fd, 'fixed', 'p99_ms'))} ms | ≤ 30 ms |")
    idle = [r for r in rows if r["scenario"] == "idle" and r["target"] == "dihya"]
    if idle:
        big = max(idle, key=lambda r: r.get("size", 0))
        lines.append(f"| idle RSS per connection ({big.get('size')}) | "
                     f"{_fmt(big.get('rss_per_conn_kb'))} KB | ≤ 40 KB |")
        lines.append(f"| {big.get('size')} connections, failures | {big.get('failures')} "
                     "| 0 at 10,000 |")
    one, two = pick("redis", "dihya", processes=1), pick("redis", "dihya", processes=2)
    scaling = _ratio(_get(two, "max", "deliveries_per_s"), _get(one, "max", "deliveries_per_s"))
    if two and not two["valid"]:
        scaling += f" (invalid: {two['invalid_reason']})"
    lines.append(f"| two processes / one on Redis, fan-out | {scaling} | ≥ 1.7× |")
    for rooms in b.args.chat_rooms:
        pg = pick("chat", "dihya", database="postgres", rooms=rooms)
        lines.append(f"| chat send→ack p99 at {b.args.chat_rate} msg/s, PostgreSQL, "
                     f"{rooms} room(s) of {b.args.acked_clients // max(rooms, 1)} | "
                     f"{_fmt(_get(pg, 'p99_ms')) if pg else 'not run'} ms | ≤ 20 ms |")
    for r in rows:
        if r["scenario"] == "abuse" and r.get("pattern"):
            by = r.get("bystander") or {}
            lines.append(f"| abuse {r['pattern']}: bystander p99 ({r.get('bystanders')}) | "
                         f"{_fmt(by.get('p99_ms'))} ms, failures "
                         f"{json.dumps(by.get('failures') or 0)} | ≤ 50 ms, 0 "
                         f"{'(met)' if r.get('p99_ok') else '(missed)'} |")
            growth = max(r.get("rss_growth_mb") or 0,
                         (r.get("rss_max_mb") or 0) - (r.get("rss_before_mb") or 0))
            lines.append(f"| abuse {r['pattern']}: server RSS growth (max during, after) | "
                         f"{_fmt(growth)} MB ({_fmt(r.get('rss_growth_mb'))} MB after) | "
                         f"≤ 50 MB {'(met)' if r.get('rss_ok') else '(missed)'} |")
    lines += cluster_summary(b)
    return "\n".join(lines) + "\n"


def cluster_cells(r: dict[str, Any]) -> tuple[str, str, Any, Any, str]:
    """size, figure, p50, p99, errors of one cluster row in the main table."""
    part = r.get("part")
    err = json.dumps(r.get("publish_errors") or r.get("errors") or {}) if (
        r.get("publish_errors") or r.get("errors")) else "0"
    if part == "foreign":
        fixed = r.get("fixed") or {}
        return (f"{r.get('code')}: {r.get('subscribers')} subs + 1 publisher at "
                f"{r.get('rate')} msg/s on A, none on B",
                f"B/A CPU {_fmt(r.get('b_over_a'))} (A {_fmt(r.get('cpu_a_s'))} s, B "
                f"{_fmt(r.get('cpu_b_s'))} s over {_fmt(r.get('window_s'))} s; B "
                f"{_fmt(r.get('b_us_per_publication'))} µs/publication); "
                f"{_fmt(fixed.get('delivered'))}/{_fmt(fixed.get('expected'))} delivered",
                fixed.get("p50_ms"), fixed.get("p99_ms"), err)
    if part == "chat":
        return (f"1 room of {r.get('members')} members over 2 proc, {r.get('rate')} msg/s",
                f"per chat message: {_fmt(r.get('publishes_per_message'))} PUBLISH/SPUBLISH,"
                f" {_fmt(r.get('deliveries_per_message'))} Redis deliveries, "
                f"{_fmt(r.get('bytes_per_message'))} B published; "
                f"{_fmt(r.get('acked'))}/{_fmt(r.get('sent'))} acked, "
                f"{_fmt(r.get('pushes_received'))} chat:message pushes received",
                r.get("p50_ms"), r.get("p99_ms"), err)
    caveat = f" ({r['caveat']})" if r.get("caveat") else ""
    return (f"{r.get('subscribers')} subs, {r.get('processes')} proc",
            f"{_fmt(_get(r, 'max', 'deliveries_per_s'))} deliveries/s (max){caveat}",
            _get(r, "fixed", "p50_ms"), _get(r, "fixed", "p99_ms"), err)


def cluster_summary(b: Bench) -> list[str]:
    """Issue 14's figures side by side: current code and the baseline of the same run."""
    rows = [r for r in b.rows if r["scenario"] == "cluster" and not r.get("skipped")]
    if not rows:
        return []
    base = b.args.cluster_baseline

    def figures(part: str, key: str, **kw: Any) -> list[Any]:
        return [r.get(key) for r in rows if r.get("part") == part
                and all(r.get(k) == v for k, v in kw.items())]

    def show(values: list[Any]) -> str:
        return " / ".join(_fmt(v) for v in values) or "not run"

    one = figures("fanout", "max", processes=1)
    two = figures("fanout", "max", processes=2)
    d1 = _get(one[0] if one else None, "deliveries_per_s")
    d2 = _get(two[0] if two else None, "deliveries_per_s")
    chat = [r for r in rows if r.get("part") == "chat"]
    lines = ["", "## Cluster (issue 14): current code and baseline, same run", "",
             f"| measure | current | before (`{base}`) | target |", "|---|---|---|---|",
             f"| (a) B CPU / A CPU, all clients on A (per run) | "
             f"{show(figures('foreign', 'b_over_a', code='current'))} | "
             f"{show(figures('foreign', 'b_over_a', code=base))} | ≤ 0.02 (0.128 in the issue) |",
             f"| (a) B's CPU per publication it has no client for, µs | "
             f"{show(figures('foreign', 'b_us_per_publication', code='current'))} | "
             f"{show(figures('foreign', 'b_us_per_publication', code=base))} | – |",
             f"| (b) PUBLISH + SPUBLISH per chat message, room of "
             f"{b.args.cluster_members} over 2 proc | "
             f"{show([r.get('publishes_per_message') for r in chat])} | not run | ≤ 2 |",
             f"| (b) Redis deliveries per chat message | "
             f"{show([r.get('deliveries_per_message') for r in chat])} | not run | – |",
             f"| (b) bytes published per chat message | "
             f"{show([r.get('bytes_per_message') for r in chat])} | not run | – |",
             f"| (c) fan-out deliveries/s, 1 proc → 2 proc (half the subscribers each) | "
             f"{_fmt(d1)} → {_fmt(d2)} ({_ratio(d2, d1)}) | not run | reported |"]
    if chat and chat[0].get("note"):
        lines += ["", f"(b): {chat[0]['note']}."]
    return lines


# -- main --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", action="append", choices=SCENARIOS,
                   help="run only this scenario (repeatable); default: all")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help="comma separated among dihya,bare,node (default: all three) and "
                        "dihya-simplews,bare-simplews (the Python servers on simple-websocket)")
    p.add_argument("--quick", action="store_true", help="tiny counts: a smoke run < 1 min")
    p.add_argument("--idle-sizes", default="1000,5000,10000")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--acked-clients", type=int, default=100)
    p.add_argument("--chat-rate", type=int, default=1000)
    p.add_argument("--chat-rooms", default="10,1",
                   help="comma separated: rooms the chat clients are spread over, one "
                        "measurement each (10: 10 pushes per send; 1: all 100 clients in one "
                        "room, 100 pushes per send = 100,000 pushes/s at 1,000 msg/s)")
    p.add_argument("--chat-warmup", type=float, default=1.0,
                   help="seconds of chat:send at the same rate before the measured phase")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each measured phase")
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight")
    p.add_argument("--timeout", type=int, default=180, help="upper bound of one generator run")
    p.add_argument("--out-dir", default=str(BENCH / "results"))
    p.add_argument("--dihya", default=shutil.which("dihya-realtime", path=str(
        Path(sys.executable).parent)) or "dihya-realtime", help="the dihya-realtime command")
    p.add_argument("--full-client", action="store_true",
                   help="idle and fan-out clients on socket.io-client instead of the "
                        "generator's minimal Socket.IO client (LiteSocket in loadgen.js)")
    p.add_argument("--dihya-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the dihya server (repeatable), for experiments "
                        "such as DIHYA_RT_AUDIT_DB=false; recorded in every row")
    p.add_argument("--cluster-baseline", default="34b9f6c", metavar="REV",
                   help="cluster scenario: the commit whose `src` (git archive, through "
                        "PYTHONPATH) is measured beside the current code for the foreign-"
                        "traffic ratio; default: main before interest routing; 'none': skip")
    p.add_argument("--cluster-redis", default="", metavar="URL",
                   help="cluster scenario: this Redis instead of a private redis-server "
                        "(its counters then include other clients' traffic)")
    p.add_argument("--cluster-parts", default="foreign,chat,fanout",
                   help="cluster scenario: comma separated among foreign (a), chat (b), "
                        "fanout (c)")
    p.add_argument("--cluster-subscribers", type=int, default=100,
                   help="cluster scenario (a): subscribers on process A")
    p.add_argument("--cluster-rate", type=int, default=1000,
                   help="cluster scenario (a): publications/s, one publisher on process A")
    p.add_argument("--cluster-members", type=int, default=1000,
                   help="cluster scenario (b): members of the chat room, over two processes")
    p.add_argument("--cluster-chat-rate", type=int, default=50,
                   help="cluster scenario (b): chat:send/s (a count, not a speed test)")
    p.add_argument("--abuse-patterns", default="baseline,yjs,attachments,connect_flood,"
                   "recovery,retained", help="comma separated: the abuse scenario's patterns")
    p.add_argument("--abuse-seconds", type=float, default=10.0,
                   help="upper bound of one abuse pattern's attack")
    p.add_argument("--abuse-bystanders", type=int, default=50)
    args = p.parse_args(argv)
    args.dihya_env = dict(kv.split("=", 1) for kv in args.dihya_env)
    args.scenarios = args.scenario or list(SCENARIOS)
    args.targets = [t for t in args.targets.split(",") if t]
    if args.quick:
        args.idle_sizes = "50"
        args.subscribers = min(args.subscribers, 50)
        args.acked_clients = min(args.acked_clients, 50)
        args.chat_rate = min(args.chat_rate, 100)
        args.chat_warmup = min(args.chat_warmup, 0.2)
        args.seconds = min(args.seconds, 1.5)
        args.timeout = min(args.timeout, 30)
        args.abuse_seconds = min(args.abuse_seconds, 3.0)
        args.abuse_bystanders = min(args.abuse_bystanders, 20)
        args.cluster_subscribers = min(args.cluster_subscribers, 20)
        args.cluster_rate = min(args.cluster_rate, 200)
        args.cluster_members = min(args.cluster_members, 50)
        args.cluster_chat_rate = min(args.cluster_chat_rate, 20)
    args.idle_sizes = [int(s) for s in str(args.idle_sizes).split(",") if s]
    args.chat_rooms = [int(s) for s in str(args.chat_rooms).split(",") if s]
    args.abuse_patterns = [s for s in str(args.abuse_patterns).split(",") if s]
    args.cluster_parts = [s for s in str(args.cluster_parts).split(",") if s]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    needs_node = set(args.scenarios) - {"abuse"}  # abuse's clients are Python (benchmarks/fuzz)
    if needs_node and (not shutil.which("node")
                       or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir()):
        sys.exit("benchmarks: the load generator needs Node and `npm ci --prefix benchmarks/node`")
    nofile = raise_open_files()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    rev = commit()
    stem = f"{now.strftime('%Y%m%d-%H%M%S')}-{rev}"
    n = cores()
    with tempfile.TemporaryDirectory(prefix="dihya-bench-") as tmp:
        b = Bench(args, Path(tmp))
        b.meta = {"date": now.strftime("%Y-%m-%d %H:%M UTC"), "commit": rev,
                  "machine": machine(), "jsonl": out_dir / f"{stem}.jsonl",
                  "pinned": ("server on core 0, generator on core 1 (taskset)"
                             if n >= 2 and shutil.which("taskset") else "not pinned"),
                  "command": "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None
                                                                    else argv)}
        log(f"bench: {b.meta['machine']}; open files {nofile}; {b.meta['pinned']}; "
            f"scenarios {','.join(args.scenarios)}; targets {','.join(args.targets)}")
        for name in args.scenarios:
            try:
                RUNNERS[name](b)
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the rest
                log(f"{name}: failed: {exc!r}")
                b.record(name, "dihya", {"error": repr(exc)[:500]})
        md = markdown(b)
    (out_dir / f"{stem}.md").write_text(md)
    print(md)
    print(f"results: {b.meta['jsonl']} and {out_dir / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
