"""``admin:audit_verify`` walks the whole trail: one walk at a time per process, shared by
whoever asks during it, and yielding between pages (``TrailVerifier``)."""

from __future__ import annotations

import threading

import pytest

from dihya_realtime.features.admin import audit_trail
from dihya_realtime.features.admin.audit_trail import TrailVerifier
from dihya_realtime.kernel.audit import AuditLog
from dihya_realtime.store import Database


@pytest.fixture
def database(database_url: str):
    db = Database(database_url)
    db.migrate()
    log = AuditLog(db, "off")
    for i in range(5):
        log.record("connect", user_id=f"user-{i}", outcome="ok")
    log.close()
    yield db
    db.dispose()


class CountedEvent(threading.Event):
    """An Event that says how many threads wait on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting += 1
        return super().wait(timeout)


def test_who_asks_during_a_walk_gets_its_result_and_no_second_walk(database, monkeypatch):
    events: list[CountedEvent] = []

    class Walk(audit_trail._Walk):
        def __init__(self) -> None:
            super().__init__()
            self.done = CountedEvent()
            events.append(self.done)

    monkeypatch.setattr(audit_trail, "_Walk", Walk)
    monkeypatch.setattr(audit_trail, "verify", _paged(audit_trail.verify, page_rows=2))
    paused, release = threading.Event(), threading.Event()

    def pause() -> None:
        paused.set()
        assert release.wait(10)

    verifier = TrailVerifier(database, pause=pause)
    results: list[dict] = []
    first = threading.Thread(target=lambda: results.append(verifier.status()))
    first.start()
    assert paused.wait(10)  # the first walk is between two pages
    second = threading.Thread(target=lambda: results.append(verifier.status()))
    second.start()
    for _ in range(1000):
        if events and events[0].waiting:
            break
        threading.Event().wait(0.01)
    assert events[0].waiting == 1  # the second caller waits for the first walk
    release.set()
    first.join(10)
    second.join(10)
    assert verifier.walks == 1
    assert len(results) == 2 and results[0] == results[1]
    assert results[0]["ok"] is True and results[0]["rows"] == 5

    assert verifier.status()["rows"] == 5  # once it is over, the next call walks again
    assert verifier.walks == 2


def test_a_failed_walk_raises_and_leaves_no_walk_behind(database, monkeypatch):
    calls = []

    def broken(_db, _pause=None):
        calls.append(1)
        raise RuntimeError("database gone")

    verifier = TrailVerifier(database)
    with monkeypatch.context() as patch:
        patch.setattr(audit_trail, "verify_status", broken)
        with pytest.raises(RuntimeError):
            verifier.status()
    assert verifier.status()["ok"] is True  # not stuck waiting for the failed walk
    assert len(calls) == 1 and verifier.walks == 2


def _paged(verify, page_rows: int):
    return lambda db, pause=None: verify(db, page_rows=page_rows, pause=pause)
