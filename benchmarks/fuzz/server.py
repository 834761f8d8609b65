"""A real ``dihya-realtime serve`` for the fuzzer and the abuse scenario: production mode (JWT
secret set here, no ``--dev``), SQLite in a temporary directory, memory broker (or Redis),
audit on; its output goes to files that are scanned for tracebacks and ``ERROR`` lines."""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
LEVEL = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ")
EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Panic)\b")
READY = "dihya-realtime ready on http://"
GENEROUS = {"rate": 100000, "burst": 100000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cli() -> list[str]:
    script = Path(sys.executable).parent / "dihya-realtime"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dihya_realtime.cli"]


def generous_limits() -> dict[str, str]:
    """Rate limits lifted, so that payloads reach validation and handlers instead of stopping
    at the token bucket (the fuzzer looks for crashes, not for the limiter's answer)."""
    from dihya_realtime import app  # noqa: F401 - declares every event
    from dihya_realtime.kernel.registry import registry

    every = {name: GENEROUS for name in registry.events}
    return {"DIHYA_RT_RATE_LIMIT_EVENT": json.dumps(GENEROUS),
            "DIHYA_RT_RATE_LIMIT_USER": json.dumps(GENEROUS),
            "DIHYA_RT_RATE_LIMIT_CONNECT_IP": json.dumps(GENEROUS),
            "DIHYA_RT_RATE_LIMIT_EVENTS": json.dumps(every)}


@dataclass
class Serve:
    """One server process in ``workdir``; ``env`` adds ``DIHYA_RT_*`` variables."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    pin: list[str] = field(default_factory=list)
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = field(default_factory=free_port)
    command: list[str] | None = None  # the dihya-realtime command (default: this venv's)
    proc: subprocess.Popen[bytes] | None = None
    _scanned: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def full_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIHYA_RT_")}
        env.update({
            "PYTHONUNBUFFERED": "1",
            "DIHYA_RT_JWT_SECRET": self.secret,
            "DIHYA_RT_DATABASE_URL": f"sqlite:///{self.workdir / 'fuzz.db'}",
            "DIHYA_RT_AUDIT_LOG": str(self.workdir / "audit.jsonl"),
        })
        env.update(self.env)
        return env

    def start(self, timeout: float = 30.0) -> Serve:
        env = self.full_env()
        cmd = self.command or cli()
        subprocess.run([*cmd, "migrate"], env=env, cwd=self.workdir, check=True,
                       capture_output=True, timeout=120)
        offset = len(self.output())  # a restart appends to the same log
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.pin, *cmd, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()[-2000:]}")
            if READY in self.output()[offset:]:
                self._scanned = len(self.log_path.read_bytes())
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout} s: {self.output()[-2000:]}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def new_errors(self) -> list[str]:
        """ERROR/CRITICAL log records and tracebacks written since the last call (whole lines
        only: a partial last line is read again next time)."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return []
        chunk = data[self._scanned:]
        cut = chunk.rfind(b"\n") + 1
        self._scanned += cut
        return error_records(chunk[:cut].decode(errors="replace").splitlines())

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        return rss_kb(self.pid) if self.alive else 0

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def token(self, user: str, roles: tuple[str, ...] = ("user",), ttl: float = 7200) -> str:
        now = int(time.time())
        return jwt.encode({"sub": user, "roles": list(roles), "iat": now, "exp": now + int(ttl)},
                          self.secret, algorithm="HS256")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def pin(core: int) -> list[str]:
    """``taskset -c core`` when the machine has two cores or more (as benchmarks/run.py)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (n or 1) < 2 or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(core)]


def error_records(lines: list[str]) -> list[str]:
    """Split log lines into records and keep the errors.

    A record starts at a timestamped line (our logging format) or, after a finished
    traceback, at the next unindented line (libraries that print their own copy, gevent's
    greenlet reports). A record is an error if its level is ERROR/CRITICAL or it holds a
    traceback. An untimestamped copy of the next timestamped record is dropped.
    """
    records: list[list[str]] = []
    done = True  # the current record's traceback (if any) has ended
    for line in lines:
        unindented = bool(line) and not line[0].isspace()
        if STAMP.match(line) or not records or (
                done and unindented and not line.startswith(("Traceback", "During handling",
                                                              "The above exception"))
                and "Traceback (most recent call last):" in "\n".join(records[-1])):
            records.append([line])
            done = True
            continue
        records[-1].append(line)
        if line.startswith("Traceback"):
            done = False
        elif unindented and EXC_LINE.match(line):
            done = True
    texts = ["\n".join(rec) for rec in records]
    logged = {exception_of(t) for t in texts if STAMP.match(t)}
    errors: list[str] = []
    for text in texts:
        if not (LEVEL.match(text) or "Traceback (most recent call last):" in text):
            continue
        if not STAMP.match(text) and text.startswith("message handler error") \
                and exception_of(text) in logged:
            continue  # engine.io's own copy of a record that is also logged with a time
        errors.append(text)
    return errors


def exception_of(record: str) -> str:
    """The last exception line of a record ('' when it has none)."""
    found = [ln for ln in record.splitlines() if EXC_LINE.match(ln)]
    return found[-1] if found else ""


def signature(record: str) -> str:
    """What identifies an error regardless of ids, counts and times: the record's first line
    and its exception, digits and hex ids folded."""
    first = STAMP.sub("", record.splitlines()[0]) if record else ""
    first = re.sub(r"^(ERROR|CRITICAL) [\w.]+ ", "", first)  # engine.io's copy has no prefix
    text = f"{first[:160]} | {exception_of(record)[:200]}"
    text = re.sub(r"b?'[^']{0,8}'|b?\"[^\"]{0,8}\"", "'…'", text)
    return re.sub(r"0x[0-9a-f]+|[0-9a-f]{12,}|\d+", "N", text)


def logged_at(record: str) -> float | None:
    """The record's time (our logging format: local time to the millisecond), as a Unix
    time; None for a record without one."""
    m = STAMP.match(record)
    if not m:
        return None
    try:
        return datetime.datetime.strptime(m.group(0).strip(), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None
