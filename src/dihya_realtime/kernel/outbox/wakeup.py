"""PostgreSQL ``LISTEN``: wake the relay when a host transaction that wrote a row commits.

``pg_notify`` runs in the host's transaction (``store/outbox.insert_row``); PostgreSQL
delivers it at commit and drops it on rollback. Polling still runs (a lost connection, a
notification missed while reconnecting): this only makes delivery prompt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from dihya_realtime.store.outbox import NOTIFY_CHANNEL

log = logging.getLogger("dihya_realtime.outbox")

CHECK_STOP_EVERY = 1.0


def listen(url: str, wake: Callable[[], None], stop: threading.Event,
           retry_max: float) -> None:
    """Call ``wake()`` on every notification until ``stop``; reconnect with a backoff."""
    import psycopg

    conninfo = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    failures = 0
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                failures = 0
                wake()  # what committed while this was not listening
                while not stop.is_set():
                    for _ in conn.notifies(timeout=CHECK_STOP_EVERY, stop_after=1):
                        wake()
        except Exception as exc:
            if stop.is_set():
                return  # shutting down: the connection went with the database or the process
            failures += 1
            if failures == 1:
                log.warning("outbox: LISTEN %s failed (%s); polling meanwhile", NOTIFY_CHANNEL,
                            exc)
            stop.wait(min(retry_max, 2 ** min(failures, 8)))
