"""Yjs work that a client can make expensive, done in worker processes, never on the event loop.

Why processes: pycrdt holds the GIL while it integrates an update (measured: a thread that
ticks every millisecond got 2 ticks while ``apply_update`` ran for 5 s), so a thread — gevent's
threadpool included — would still freeze every greenlet of the server. A small pool of
``python -m dihya_realtime.features.collab.worker`` processes is fed bytes over pipes instead:

- :meth:`DocWorkers.check` applies an update to a copy of the document's *current* state and
  measures it: structs and client ids (parsed before pycrdt sees the bytes), CPU time of the
  integration, size of the resulting document. Over a cap → ``payload_too_large``; bytes
  that do not decode or do not apply to this document → ``invalid_payload``.
- :meth:`DocWorkers.failing_parts` finds which stored updates no longer apply (quarantine).

Each worker is bounded: ``RLIMIT_DATA`` (memory), ``RLIMIT_CPU`` re-armed per job (the kernel
kills a job that runs away inside Rust code, where no Python signal handler can run), and a
wall-clock deadline after which the parent kills it. A dead worker is replaced on next use;
the job that killed it is refused. Waiting for a worker is cooperative under gevent
(monkey-patched ``select``/``queue``) and blocks only the calling thread otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import queue
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from dihya_realtime.kernel.errors import ErrorCode, RealtimeError

_HEADER = struct.Struct(">I")
_READY = b"R"  # written once a worker has loaded pycrdt
_START_TIMEOUT = 30.0  # seconds for a new worker to start (a loaded machine is slow)
_MAX_RESULT = 1 << 20  # a verdict or a list of indices; anything bigger is not our worker


@dataclass(frozen=True, slots=True)
class Budget:
    """What one update may cost (the ``DIHYA_RT_DOC_*`` settings)."""

    max_structs: int
    max_clients: int
    max_doc_bytes: int
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """An update that fits the budget: whether it changes the document, and what it cost."""

    changes: bool
    size: int  # bytes of the document's state with the update applied
    structs: int
    clients: int
    cpu: float


class Refused(Exception):
    """Raised in a worker; becomes a :class:`RealtimeError` in the server."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


# -- the update format (Yjs v1 encoding, lib0) ------------------------------------------------


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise ValueError("truncated update")
        self.pos += 1
        return self.buf[self.pos - 1]

    def uint(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 70:
                raise ValueError("varuint too long")

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("truncated update")
        self.pos += n

    def skip_bytes(self) -> None:  # a varstring or a varUint8Array
        self.skip(self.uint())

    def skip_any(self, depth: int = 0) -> None:
        if depth > 32:
            raise ValueError("value nested too deep")
        tag = self.byte()
        if tag in (127, 126, 121, 120):
            return
        if tag == 125:  # signed varint: bytes until one without the continuation bit
            while self.byte() & 0x80:
                pass
        elif tag == 124:
            self.skip(4)
        elif tag in (123, 122):
            self.skip(8)
        elif tag in (119, 116):
            self.skip_bytes()
        elif tag == 118:
            for _ in range(self.uint()):
                self.skip_bytes()
                self.skip_any(depth + 1)
        elif tag == 117:
            for _ in range(self.uint()):
                self.skip_any(depth + 1)
        else:
            raise ValueError(f"unknown value tag {tag}")


def count_structs(update: bytes) -> tuple[int, int]:
    """``(structs, distinct client ids)`` of a v1 update; ``ValueError`` if it is malformed.

    Linear in the bytes (every struct takes at least one), which the payload limit bounds.
    """
    r = _Reader(update)
    clients: set[int] = set()
    structs = 0
    for _ in range(r.uint()):
        count, client = r.uint(), r.uint()
        r.uint()  # clock
        clients.add(client)
        structs += count
        for _ in range(count):
            info = r.byte()
            kind = info & 0x1F
            if kind in (0, 10):  # GC, Skip
                r.uint()
                continue
            if info & 0x80:
                r.uint(), r.uint()
            if info & 0x40:
                r.uint(), r.uint()
            if not info & 0xC0:
                if r.uint() == 1:
                    r.skip_bytes()  # parent: a root name
                else:
                    r.uint(), r.uint()  # parent: an item id
                if info & 0x20:
                    r.skip_bytes()  # parentSub (a map key)
            if kind == 1:
                r.uint()
            elif kind == 2:
                for _ in range(r.uint()):
                    r.skip_bytes()
            elif kind in (3, 4, 5):
                r.skip_bytes()
            elif kind == 6:
                r.skip_bytes()
                r.skip_bytes()
            elif kind == 7:
                if r.uint() in (3, 5):  # XmlElement, XmlHook carry a name
                    r.skip_bytes()
            elif kind == 8:
                for _ in range(r.uint()):
                    r.skip_any()
            elif kind == 9:
                r.skip_bytes()
                r.skip_any()
            else:
                raise ValueError(f"unknown content type {kind}")
    for _ in range(r.uint()):  # the delete set
        clients.add(r.uint())
        for _ in range(r.uint()):
            r.uint(), r.uint()
    if r.pos != len(update):
        raise ValueError("trailing bytes after the update")
    return structs, len(clients)


# -- the jobs (run in a worker) ---------------------------------------------------------------


def check_update(state: bytes, update: bytes, budget: Budget) -> Verdict:
    """Apply ``update`` to a copy of ``state`` within ``budget``; raise :class:`Refused`.

    Only in a worker process: an overrun ends the process it runs in.
    """
    from pycrdt import Doc

    if not _in_worker:
        raise RuntimeError("check_update runs in a doc worker process only")
    try:
        structs, clients = count_structs(update)
    except ValueError as exc:
        raise Refused("invalid_payload", f"malformed Yjs update: {exc}",
                      {"field": "update"}) from None
    if structs > budget.max_structs:
        raise Refused("payload_too_large", "the update holds too many structs",
                      {"limit": "structs", "max": budget.max_structs})
    if clients > budget.max_clients:
        raise Refused("payload_too_large", "the update holds too many client ids",
                      {"limit": "clients", "max": budget.max_clients, "clients": clients})
    doc: Doc = Doc()
    doc.apply_update(state)
    before = doc.get_update()
    started = time.process_time()
    # SIGPROF's default action ends the process, inside Rust code too: the integration may
    # not run past a few times its budget (the parent sees the worker gone and refuses)
    signal.setitimer(signal.ITIMER_PROF, max(4 * budget.cpu_seconds, 0.1))
    try:
        failure = _apply(doc, update)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    if failure is not None:
        raise Refused("invalid_payload", "the update does not apply to this document",
                      {"field": "update", "reason": failure[:200]})
    cpu = time.process_time() - started
    if cpu > budget.cpu_seconds:
        raise Refused("payload_too_large", "the update takes too long to apply",
                      {"limit": "cpu_seconds", "max": budget.cpu_seconds})
    after = doc.get_update()
    if len(after) > budget.max_doc_bytes:
        raise Refused("payload_too_large", "the document would grow past its size limit",
                      {"limit": "doc_bytes", "max": budget.max_doc_bytes})
    return Verdict(changes=structs > 0 or after != before, size=len(after), structs=structs,
                   clients=clients, cpu=cpu)


def failing_parts(parts: list[bytes]) -> list[int]:
    """Indices of the updates that do not apply, in order, to what the others build."""
    from pycrdt import Doc, merge_updates

    try:
        merged = merge_updates(*parts)
    except Exception:
        merged = b""
    if merged and _apply(Doc(), merged) is None:
        return []  # the usual case, and fast even when applying one by one is not
    doc: Doc = Doc()
    return [i for i, part in enumerate(parts) if _apply(doc, part) is not None]


def _apply(doc: Any, update: bytes) -> str | None:
    """Apply ``update`` to a pycrdt ``Doc``; why it failed (``doc`` unchanged), or ``None``."""
    try:
        doc.apply_update(update)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        return f"panic: {exc}"
    return None


_in_worker = False
_JOBS: dict[str, Callable[..., Any]] = {"check": check_update,
                                        "failing_parts": failing_parts}


def main() -> None:
    """The worker: length-prefixed jobs on stdin (pickled by the server), results on stdout
    (JSON: the server never unpickles what a process that parsed client bytes wrote)."""
    global _in_worker
    _in_worker = True
    memory, cpu_hard = int(sys.argv[1]), float(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is not ours
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # the per-update CPU limit (check_update)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    import pycrdt  # noqa: F401  (loaded before the first job: its time is not the job's)

    stdout.write(_READY)
    stdout.flush()
    while True:
        head = stdin.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        name, args = pickle.loads(stdin.read(_HEADER.unpack(head)[0]))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(usage.ru_utime + usage.ru_stime + cpu_hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        try:
            value = _JOBS[name](*args)
            result: tuple[Any, ...] = ("ok", asdict(value) if isinstance(value, Verdict)
                                       else value)
        except Refused as exc:
            result = ("refused", exc.code, exc.message, exc.details)
        except MemoryError:
            result = ("refused", "payload_too_large", "the update needs too much memory",
                      {"limit": "memory"})
        except Exception as exc:  # a bug of ours: reported, and the worker lives on
            result = ("error", f"{type(exc).__name__}: {exc}"[:500])
        data = json.dumps(result).encode()
        stdout.write(_HEADER.pack(len(data)) + data)
        stdout.flush()


# -- the pool (in the server) -----------------------------------------------------------------


class _WorkerGone(Exception):
    pass


class _Worker:
    def __init__(self, memory: int, timeout: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dihya_realtime.features.collab.worker", str(memory),
             str(timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd, self.rfd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        os.set_blocking(self.rfd, False)
        try:
            if self._read(len(_READY), time.monotonic() + _START_TIMEOUT) != _READY:
                raise _WorkerGone
        except (TimeoutError, _WorkerGone):
            self.kill()
            raise RealtimeError(ErrorCode.UNAVAILABLE, "a document worker did not start",
                                retry_after=5.0) from None

    def call(self, job: tuple[str, tuple[Any, ...]], deadline: float) -> Any:
        data = pickle.dumps(job)
        self._write(_HEADER.pack(len(data)) + data, deadline)
        size = _HEADER.unpack(self._read(_HEADER.size, deadline))[0]
        if size > _MAX_RESULT:
            raise _WorkerGone
        return json.loads(self._read(size, deadline))

    def _wait(self, fd: int, write: bool, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        ready = select.select([], [fd], [], remaining) if write else \
            select.select([fd], [], [], remaining)
        if not ready[1 if write else 0]:
            raise TimeoutError

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait(self.wfd, True, deadline)
            try:
                view = view[os.write(self.wfd, view):]
            except BlockingIOError:
                continue
            except OSError:
                raise _WorkerGone from None

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, got = [], 0
        while got < size:
            self._wait(self.rfd, False, deadline)
            try:
                chunk = os.read(self.rfd, size - got)
            except BlockingIOError:
                continue
            if not chunk:
                raise _WorkerGone
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


class DocWorkers:
    """At most ``size`` worker processes, started on first use and kept while healthy.

    ``timeout`` (seconds) bounds one job: the parent kills a worker that has not answered by
    then, and the kernel one that used that much CPU. ``memory`` (bytes, 0 = no limit)
    bounds each worker's heap. A caller that finds every worker busy waits up to
    ``timeout`` for one, then gets ``unavailable``.
    """

    def __init__(self, size: int, timeout: float, memory: int) -> None:
        self.size, self.timeout, self.memory = size, timeout, memory
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._started = 0

    def check(self, state: bytes, update: bytes, budget: Budget) -> Verdict:
        """:func:`check_update` in a worker; raises :class:`RealtimeError` on a refusal."""
        try:
            verdict = Verdict(**self._run(("check", (state, update, budget))))
        except TimeoutError:
            raise RealtimeError(ErrorCode.PAYLOAD_TOO_LARGE, "the update takes too long to "
                                "apply", {"limit": "cpu_seconds",
                                          "max": budget.cpu_seconds}) from None
        return verdict

    def failing_parts(self, parts: list[bytes]) -> list[int]:
        return [int(i) for i in self._run(("failing_parts", (parts,)))]

    def _run(self, job: tuple[str, tuple[Any, ...]]) -> Any:
        worker = self._acquire(time.monotonic() + self.timeout)
        deadline = time.monotonic() + self.timeout  # the job's own time, not the wait's
        try:
            result = worker.call(job, deadline)
        except (TimeoutError, _WorkerGone):
            self._discard(worker)
            raise TimeoutError from None
        except BaseException:
            self._discard(worker)
            raise
        self._idle.put(worker)
        if result[0] == "error":
            raise RuntimeError(f"document worker failed: {result[1]}")
        if result[0] == "refused":
            raise RealtimeError(ErrorCode(result[1]), result[2], result[3])
        return result[1]

    def _acquire(self, deadline: float) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            spawn = self._started < self.size
            if spawn:
                self._started += 1
        if spawn:
            try:
                return _Worker(self.memory, self.timeout)
            except BaseException:
                with self._lock:
                    self._started -= 1
                raise
        try:
            return self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise RealtimeError(ErrorCode.UNAVAILABLE, "every document worker is busy",
                                retry_after=1.0) from None

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._started -= 1
        worker.kill()


_pools: dict[tuple[int, float, int], DocWorkers] = {}
_pools_lock = threading.Lock()


def pool(size: int, timeout: float, memory: int) -> DocWorkers:
    """The process-wide pool for these limits (every ``Realtime`` of a process shares it)."""
    key = (size, timeout, memory)
    with _pools_lock:
        found = _pools.get(key)
        if found is None:
            found = _pools[key] = DocWorkers(size, timeout, memory)
        return found


if __name__ == "__main__":
    # run the jobs from the importable module, not ``__main__``: pickled values name it
    from dihya_realtime.features.collab.worker import main as _main

    _main()
