"""The one place where an event is declared.

A feature module reads like its event list::

    class SendPayload(BaseModel):
        room_id: str
        text: str = Field(min_length=1, max_length=4000)

    @event("chat:send", payload=SendPayload, reply=Message, permission="chat:write")
    def send(ctx: EventContext, payload: SendPayload) -> dict:
        '''Send a message to a room. ... payload example ...'''
        ...

The decorator records the name, payload and reply models, permission, rate limit, whether
anonymous users may call it and what to audit on success beside the handler::

    @event("chat:invite", payload=MemberPayload, reply=InviteReply, permission="chat:write",
           audit="chat_invite",
           audit_details=lambda p, reply: {"room_id": p.room_id, "target": p.user_id})

:mod:`dihya_realtime.kernel.pipeline` runs every declared event through rate limit →
validation → permission → anonymous rule → handler → audit → redaction → metrics, and
:mod:`dihya_realtime.docs` turns the same declarations into the events reference and the
AsyncAPI document, so nothing is written twice.

Events the server sends (``publication``, ``presence:join`` …) are declared with
:func:`server_event` so they are documented from one schema too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from dihya_realtime.kernel.settings import RateLimit

Handler = Callable[..., Any]

AuditDetails = Callable[[Any, Any], dict[str, Any] | None]
"""``fn(payload, reply)`` → the details of an event's success row, or ``None`` for no row.

``payload`` is the validated payload, ``reply`` the handler's result (a model dumped to
its dict), before redaction. ``None`` says the reply shows nothing worth auditing
happened (``unsubscribe`` of a channel the connection was not subscribed to).
"""


@dataclass(slots=True)
class EventSpec:
    """A client → server event: how it is checked and what it replies."""

    name: str
    handler: Handler
    payload: type[BaseModel] | None
    reply: type[BaseModel] | None
    permission: str | None
    rate: RateLimit | None
    feature: str
    summary: str
    description: str
    emits: tuple[str, ...] = ()
    allow_anonymous: bool = True
    binary: bool = False
    audit: str | None = None
    audit_details: AuditDetails | None = None


@dataclass(slots=True)
class ServerEventSpec:
    """A server → client event: its payload schema and when it is sent."""

    name: str
    schema: type[BaseModel]
    feature: str
    summary: str
    description: str


@dataclass
class Registry:
    """Every declared event, in declaration order."""

    events: dict[str, EventSpec] = field(default_factory=dict)
    server_events: dict[str, ServerEventSpec] = field(default_factory=dict)

    def event(
        self,
        name: str,
        *,
        payload: type[BaseModel] | None = None,
        reply: type[BaseModel] | None = None,
        permission: str | None = None,
        rate: RateLimit | None = None,
        emits: tuple[str, ...] = (),
        feature: str | None = None,
        binary: bool = False,
        allow_anonymous: bool = True,
        audit: str | None = None,
        audit_details: AuditDetails | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare the client event ``name``; the handler is ``fn(ctx, payload)``.

        ``payload`` validates what the client sends (``None``: the event takes no payload);
        ``reply`` documents ``data`` of the success envelope; ``permission`` is checked
        against the caller's roles; ``rate`` overrides the per-event default token bucket.
        ``binary=True``: the payload may carry bytes (Socket.IO attachments); any other event's
        binary packet is refused with ``invalid_payload`` before its attachments are read.
        ``allow_anonymous=False``: an anonymous principal is refused with ``forbidden``.
        ``audit``: the type of the row recorded once the handler succeeded, with the
        connection's audit fields and ``audit_details(payload, reply)`` as details (see
        :data:`AuditDetails`); a handler that learns nothing worth it happened calls
        ``ctx.skip_audit()``. A failed call records no such row.
        """
        if audit_details is not None and audit is None:
            raise ValueError(f"event {name!r}: audit_details without audit")

        def decorate(fn: Handler) -> Handler:
            if name in self.events and self.events[name].handler is not fn:
                raise ValueError(f"event {name!r} is declared twice")
            summary, description = _split_doc(fn)
            self.events[name] = EventSpec(
                name=name,
                handler=fn,
                payload=payload,
                reply=reply,
                permission=permission,
                rate=rate,
                feature=feature or _feature_of(name),
                summary=summary,
                description=description,
                emits=emits,
                allow_anonymous=allow_anonymous,
                binary=binary,
                audit=audit,
                audit_details=audit_details,
            )
            return fn

        return decorate

    def server_event(
        self, name: str, schema: type[BaseModel], doc: str, *, feature: str | None = None
    ) -> None:
        """Declare an event the server emits to clients, with its payload schema."""
        summary, _, description = inspect.cleandoc(doc).partition("\n")
        self.server_events[name] = ServerEventSpec(
            name=name,
            schema=schema,
            feature=feature or _feature_of(name),
            summary=summary.strip(),
            description=description.strip(),
        )


def _feature_of(name: str) -> str:
    return name.split(":", 1)[0] if ":" in name else "core"


def _split_doc(fn: Handler) -> tuple[str, str]:
    doc = inspect.getdoc(fn)
    if not doc:
        raise ValueError(f"event handler {fn.__qualname__} needs a docstring: it is the docs")
    summary, _, description = doc.partition("\n")
    return summary.strip(), description.strip()


registry = Registry()
"""The default registry: every built-in feature declares its events here."""

event = registry.event
server_event = registry.server_event
