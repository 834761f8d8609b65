"""An in-process app and the Flask-SocketIO test client, for fast tests of a host's events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask_socketio import SocketIOTestClient

from dihya_realtime.client.errors import RealtimeError, unwrap
from dihya_realtime.features import migration_branches
from dihya_realtime.kernel.registry import registry
from dihya_realtime.realtime import Realtime


class RealtimeTestClient(SocketIOTestClient):
    """The Flask-SocketIO test client with the wire contract's helpers.

    ``call(event, payload)`` returns the reply's ``data`` or raises
    :class:`dihya_realtime.client.RealtimeError`, like the real client; ``reply`` gives the
    raw envelope; ``events(name)`` the payloads of a server event received so far.
    """

    def reply(self, event: str, payload: Any = None) -> Any:
        return self.emit(event, {} if payload is None else payload, callback=True)

    def call(self, event: str, payload: Any = None) -> Any:
        reply = self.reply(event, payload)
        if reply is None:
            raise RealtimeError("disconnected", f"no reply to {event}: not connected")
        return unwrap(event, reply)

    def events(self, name: str) -> list[Any]:
        """Payloads of ``name`` received since the last look (the test client clears them)."""
        self._kept = getattr(self, "_kept", [])
        self._kept.extend(self.get_received())
        return [m["args"][0] if m["args"] else None for m in self._kept if m["name"] == name]


def default_factory(**overrides: Any) -> Flask:
    """A bare Flask app with Realtime: what ``rt_app`` builds when no factory is given."""
    app = Flask("dihya_realtime_test")
    app.config["SECRET_KEY"] = "dihya-realtime-test"
    Realtime(app, **overrides)
    return app


@contextmanager
def forgetting_new_events() -> Iterator[None]:
    """Events declared inside the block (a factory's ``@rt.event``) are forgotten after it,
    so the next test's factory may declare them again."""
    import dihya_realtime.app  # noqa: F401 - declares the built-in events: those stay

    events, server_events = dict(registry.events), dict(registry.server_events)
    try:
        yield
    finally:
        registry.events.clear()
        registry.events.update(events)
        registry.server_events.clear()
        registry.server_events.update(server_events)


def build_app(factory: Callable[..., Flask] | None, settings: dict[str, Any]) -> Flask:
    """``factory(**settings)``, its Realtime's database migrated."""
    app = (factory or default_factory)(**settings)
    rt = realtime_of(app)
    rt.db.migrate(migration_branches(rt.settings.features))
    return app


def realtime_of(app: Flask) -> Realtime:
    rt = app.extensions.get("dihya_realtime")
    if rt is None:
        raise TypeError("the app factory returned an app without Realtime (init_app it)")
    return rt
