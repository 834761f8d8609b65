"""What the kernel and the transport need from the object that composes them.

:class:`~dihya_realtime.realtime.Realtime` is that object, and it also composes the features.
Typing the kernel against ``Realtime`` would make the kernel know every feature (through its
attributes) and tie them in one import cycle; typing it against :class:`Host` says exactly what
the kernel uses, and nothing more. ``Realtime`` satisfies it (mypy checks that where the kernel
is built: ``Pipeline(self)``, ``ConnectionLifecycle(self)`` …).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flask import Blueprint
    from flask_socketio import SocketIO

    from dihya_realtime.broker import Broker
    from dihya_realtime.kernel.audit import AuditLog
    from dihya_realtime.kernel.auth import ApiKeyChecker, Verifier
    from dihya_realtime.kernel.connections import Connection, ConnectionTable
    from dihya_realtime.kernel.expiry import ExpiryWatch
    from dihya_realtime.kernel.metrics import Metrics
    from dihya_realtime.kernel.permissions import PermissionSet
    from dihya_realtime.kernel.principal import Principal
    from dihya_realtime.kernel.ratelimit import KeyedBuckets
    from dihya_realtime.kernel.refusals import RefusalAudit
    from dihya_realtime.kernel.registry import EventSpec, ServerEventSpec
    from dihya_realtime.kernel.settings import Settings
    from dihya_realtime.store import Database


class Events(Protocol):
    """The declared events a host serves (the registry, or its enabled-features view)."""

    @property
    def events(self) -> Mapping[str, EventSpec]: ...

    @property
    def server_events(self) -> Mapping[str, ServerEventSpec]: ...


class SessionLimits(Protocol):
    """The Engine.IO session guard, as the connection lifecycle sees it."""

    def authenticated(self, eio_sid: str | None) -> None: ...

    def released(self, eio_sid: str | None) -> None: ...


class Host(Protocol):
    """Everything the kernel, the transport and the HTTP API read from ``Realtime``."""

    settings: Settings
    socketio: SocketIO
    metrics: Metrics
    audit: AuditLog
    refusals: RefusalAudit
    connections: ConnectionTable
    namespace_connections: ConnectionTable
    user_buckets: KeyedBuckets
    ip_buckets: KeyedBuckets
    verifier: Verifier
    api_keys: ApiKeyChecker
    expiry: ExpiryWatch
    db: Database
    broker: Broker
    blueprint: Blueprint

    @property
    def registry(self) -> Events: ...

    @property
    def guard(self) -> SessionLimits: ...

    def client_address(self, environ: dict) -> str | None: ...

    def emit(self, event: str, data: Any, to: str | list[str] | None = None,
             skip_sid: str | list[str] | None = None, local: bool = False) -> None: ...

    def redact(self, value: Any, *, event: str, conn: Connection | None = None) -> Any: ...

    def disconnect_sid(self, sid: str) -> None: ...

    def principal_permissions(self, principal: Principal) -> PermissionSet: ...

    def on_disconnect(self, fn: Callable[[Connection, str], None]) -> Any: ...


__all__ = ["Events", "Host", "SessionLimits"]
