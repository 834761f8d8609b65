"""The server-side API of documents: create one, read its state and its content as JSON.

**The in-memory ``Doc`` of a process is a cache that catches up from SQL.** Reading through
it (when the document is open here) or through a scratch room (when it is not) gives the same
answer: every update stored so far, merged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycrdt import Doc, Text

from dihya_realtime.features.collab.rooms import DocRoom, OpenDocs, check_doc_id
from dihya_realtime.features.collab.updatelog import UpdateLog
from dihya_realtime.features.collab.yjs import root_value
from dihya_realtime.kernel.errors import conflict, not_found

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


class Documents:
    """Create and read documents from the server (HTTP API, host app)."""

    def __init__(self, rt: Realtime, open_docs: OpenDocs, updates: UpdateLog) -> None:
        self.rt = rt
        self.open_docs = open_docs
        self.updates = updates

    def create(self, doc_id: str, text: str | None = None, *, root: str = "text",
               created_by: str | None = None) -> dict[str, Any]:
        """Create a document, optionally with ``text`` in its ``Text`` root ``root``.

        Raises ``conflict`` if it exists. Returns :meth:`read` of the new document.
        """
        check_doc_id(doc_id)
        if not self.updates.insert(doc_id, created_by):
            raise conflict(f"document {doc_id!r} already exists", {"doc_id": doc_id})
        if text:
            doc: Doc = Doc()
            doc[root] = Text(text)
            self.updates.append(doc_id, doc.get_update(), created_by)
        self.rt.audit.record("doc_create", user_id=created_by, outcome="ok",
                             details={"doc_id": doc_id, "size": len(text or "")})
        return self.read(doc_id, roots={root: "text"})

    def read(self, doc_id: str, roots: dict[str, str] | None = None) -> dict[str, Any]:
        """The document as JSON: ``{"doc_id", "seq", "content": {root: value}, "text"}``.

        Yjs updates do not say which type a root is (a client decides when it calls
        ``getText`` / ``getMap``), so ``roots`` names them: ``{"text": "text",
        "meta": "map"}`` (kinds: text, map, array, xml). The default reads the ``Text`` root
        ``text``; ``text`` in the result is that root's plain text (or ``None``).
        """
        check_doc_id(doc_id)
        roots = roots or {"text": "text"}
        state, seq = self.state(doc_id)
        content: dict[str, Any] = {}
        for name, kind in roots.items():
            scratch: Doc = Doc()  # a fresh copy per root: naming a root's type must not leak
            scratch.apply_update(state)
            content[name] = root_value(scratch, name, kind)
        text = content.get("text") if roots.get("text") == "text" else None
        return {"doc_id": doc_id, "seq": seq, "content": content, "text": text}

    def state(self, doc_id: str) -> tuple[bytes, int]:
        """The full Yjs state of a document as one update, and the last ``seq`` it holds."""
        room = self.open_docs.get(doc_id)
        if room is not None:
            with room.lock:
                self.updates.catch_up(room)
                return room.doc.get_update(), room.seq
        if not self.updates.exists(doc_id):
            raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
        room = DocRoom(doc_id)
        self.updates.catch_up(room)
        return room.doc.get_update(), room.seq
