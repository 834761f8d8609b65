"""Who may open a document, and in which mode: roles as a ceiling, then grants.

Access is explicit: a document's creator edits it; others need a grant (to a user or a role,
``read`` or ``edit``) from the creator or a holder of ``doc:admin``, by ``doc:grant`` /
``doc:revoke`` or ``PUT /api/v1/docs/<id>/access``. Role permissions (``doc:read`` /
``doc:edit``) stay a ceiling. A host app that sets ``rt.docs.access_check`` decides instead of
the grants.

When grants change, the participants that lost access must be closed on *every* process:
this process rechecks its own at once and asks the others over the control bus
(action ``doc_access``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dihya_realtime.features.collab.models import docs_table, grants_table
from dihya_realtime.features.collab.rooms import Access, AccessCheck, check_doc_id
from dihya_realtime.kernel.errors import RealtimeError, forbidden, not_found
from dihya_realtime.kernel.principal import Principal

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.collab")

ACCESS_CONTROL_ACTION = "doc_access"
"""The control action asking every process to check its participants of a document again."""

_docs = docs_table
_grants = grants_table
_RANK: dict[str | None, int] = {None: 0, "read": 1, "edit": 2}
_MODES: dict[str, Access] = {"read": "read", "edit": "edit"}


class DocAccess:
    """Access checks and the grants table of documents."""

    def __init__(self, rt: Realtime, node_id: str, recheck: Callable[[str], None]) -> None:
        self.rt = rt
        self.node_id = node_id
        self.access_check: AccessCheck | None = None
        self._recheck = recheck  # check this process's participants of a document again
        rt.control.register(ACCESS_CONTROL_ACTION, self._on_access_changed)

    def access(self, conn: Connection, doc_id: str) -> Access:
        """``edit`` or ``read`` for this connection on this document, else ``forbidden``.

        The roles' ``doc:edit`` / ``doc:read`` are the ceiling; under it, the host app's
        :attr:`access_check` if set, else :meth:`granted` (creator, ``doc:admin``, grants).
        """
        ceiling: Access | None = "edit" if conn.can("doc:edit") else \
            "read" if conn.can("doc:read") else None
        mode: Access | None = None
        if ceiling is not None:
            if self.access_check is not None:
                mode = self.access_check(conn.principal, doc_id)
            elif conn.can("doc:admin"):
                mode = "edit"
            else:
                mode = self.granted(conn.principal, doc_id)
        if mode is None or ceiling is None:
            raise forbidden(f"no access to document {doc_id!r}", {"doc_id": doc_id})
        return mode if _RANK[mode] <= _RANK[ceiling] else ceiling

    def granted(self, principal: Principal, doc_id: str) -> Access | None:
        """What the grants give ``principal``: ``edit`` for the creator, else the widest
        grant to the user or to one of its roles, else ``None``."""
        user_id = principal.user_id
        with self.rt.db.session() as s:
            creator = s.execute(sa.select(_docs.c.created_by).where(_docs.c.id == doc_id)
                                ).first()
            if creator is not None and creator.created_by == user_id:
                return "edit"
            modes = s.execute(sa.select(_grants.c.mode).where(
                _grants.c.doc_id == doc_id,
                sa.or_(sa.and_(_grants.c.kind == "user", _grants.c.subject == user_id),
                       sa.and_(_grants.c.kind == "role",
                               _grants.c.subject.in_(list(principal.roles)))))).scalars()
            best = max(modes, key=lambda m: _RANK.get(m, 0), default=None)
        return _MODES.get(best) if best is not None else None

    def grants(self, doc_id: str) -> dict[str, Any]:
        """``{"doc_id", "created_by", "grants": [{"user_id" | "role", "mode"}]}``."""
        with self.rt.db.session() as s:
            row = s.execute(sa.select(_docs.c.created_by).where(_docs.c.id == doc_id)).first()
            if row is None:
                raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
            rows = s.execute(sa.select(_grants.c.kind, _grants.c.subject, _grants.c.mode)
                             .where(_grants.c.doc_id == doc_id)
                             .order_by(_grants.c.kind, _grants.c.subject)).all()
        return {"doc_id": doc_id, "created_by": row.created_by,
                "grants": [{("user_id" if r.kind == "user" else "role"): r.subject,
                            "mode": r.mode} for r in rows]}

    def may_manage(self, principal: Principal, can_admin: bool, doc_id: str) -> bool:
        """Whether ``principal`` may change who has access: the creator or ``doc:admin``."""
        if can_admin:
            return True
        with self.rt.db.session() as s:
            row = s.execute(sa.select(_docs.c.created_by).where(_docs.c.id == doc_id)).first()
        if row is None:
            raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
        return row.created_by is not None and row.created_by == principal.user_id

    def set_grants(self, doc_id: str, changes: Sequence[tuple[str, str, Any]],
                   *, by: str | None, replace: bool = False) -> dict[str, Any]:
        """Apply ``(kind, subject, mode)`` changes (``mode`` ``None`` revokes); ``replace``
        drops every other grant first. Audited as ``doc_access``; participants that lost
        access are closed (on every process). Returns :meth:`grants`."""
        check_doc_id(doc_id)
        now = datetime.now(UTC)
        with self.rt.db.write_transaction() as c:
            if c.execute(sa.select(_docs.c.id).where(_docs.c.id == doc_id)).first() is None:
                raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
            if replace:
                c.execute(sa.delete(_grants).where(_grants.c.doc_id == doc_id))
            for kind, subject, mode in changes:
                c.execute(sa.delete(_grants).where(_grants.c.doc_id == doc_id,
                                                   _grants.c.kind == kind,
                                                   _grants.c.subject == subject))
                if mode is not None:
                    c.execute(sa.insert(_grants).values(
                        doc_id=doc_id, kind=kind, subject=subject, mode=mode, granted_by=by,
                        created_at=now))
        self.rt.audit.record("doc_access", user_id=by, outcome="ok", details={
            "doc_id": doc_id, "replace": replace,
            "changes": [{"kind": k, "subject": sub, "mode": m} for k, sub, m in changes]})
        self._recheck(doc_id)
        if self.rt.settings.redis_url:
            try:
                self.rt.control.send(ACCESS_CONTROL_ACTION, doc_id=doc_id, node=self.node_id)
            except RealtimeError:
                log.warning("could not tell the other processes that access to %s changed",
                            doc_id)
        return self.grants(doc_id)

    def _on_access_changed(self, data: dict[str, Any]) -> None:
        if data.get("node") == self.node_id:
            return  # rechecked already, by set_grants
        self.rt.socketio.start_background_task(self._recheck, str(data.get("doc_id")))
