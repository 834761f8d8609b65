"""Transactional publish: an outbox written in the host's transaction, relayed after commit.

``rt.publish(channel, data, session=db.session)`` does not publish: it writes a row through the
host app's SQLAlchemy session (:meth:`Outbox.enqueue`), so the row commits or rolls back with
the host's own change. A :class:`~.relay.Relay` in every process with a ``Realtime`` publishes
committed rows, in commit order per channel, exactly once per row: woken by PostgreSQL
``LISTEN/NOTIFY`` (:mod:`.wakeup`), by a commit in this process, and by polling.

The kernel knows no feature: what a row *does* is a handler registered per kind by
:class:`~dihya_realtime.realtime.Realtime` (``publish``, ``notify``,
``chat.system_message``), which calls the feature's service with the row's id as the
idempotency key. The tables and statements are :mod:`dihya_realtime.store.outbox`'s.
docs/host-integration.md tells the host app's side.
"""

from dihya_realtime.kernel.outbox.queue import Outbox, OutboxHandler, Queued

__all__ = ["Outbox", "OutboxHandler", "Queued"]
