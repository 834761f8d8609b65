"""The two python-socketio hooks the event pipeline stands on.

``Server._trigger_event`` is wrapped so that authentication runs before *any* connect handler
(a host app's own ``@socketio.on('connect')`` cannot bypass it), for the CONNECT of every
namespace, and so that declared events reach the pipeline without Flask-SocketIO's per-event
request context. ``Server._handle_event_internal`` is wrapped so the pipeline knows whether
the client asked for an ack. Both are private to python-socketio (pinned ``<6`` in
pyproject): :func:`check_hooks` runs first and stops start-up, naming the adaptation, if
either is missing — a hook set on a method the library no longer calls would silently let
every connection in unauthenticated.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dihya_realtime.kernel.pipeline import RESERVED_EVENTS, client_event

if TYPE_CHECKING:
    from dihya_realtime.kernel.lifecycle import ConnectionLifecycle
    from dihya_realtime.kernel.registry import EventSpec

Dispatch = Callable[["EventSpec | None", str, str, tuple], Any]

REQUIRED_HOOKS = {
    "_trigger_event": ("event", "namespace"),
    "_handle_event_internal": ("server", "sid", "eio_sid", "data", "namespace", "id"),
}
"""What each wrapped method must look like: its leading parameter names."""


class HooksMissing(RuntimeError):
    """python-socketio lacks a method the event pipeline wraps (a new major version?)."""


def check_hooks(server: Any) -> None:
    """Fail loudly, naming the adaptation, if ``server`` lacks what :func:`install` wraps."""
    problems = []
    for name, params in REQUIRED_HOOKS.items():
        method = getattr(type(server), name, None)
        if not callable(method):
            problems.append(f"Server.{name} is missing")
            continue
        found = list(inspect.signature(method).parameters)[1:1 + len(params)]  # after self
        if found != list(params):
            problems.append(f"Server.{name}{tuple(found)} does not take {params}")
    if problems:
        raise HooksMissing(
            "dihya-realtime's event pipeline (dihya_realtime.transport.hooks: authentication "
            "before any connect handler, declared events, acks) cannot adapt this "
            f"python-socketio: {'; '.join(problems)}. Install python-socketio<6 or adapt "
            "dihya_realtime.transport.hooks")


def install(server: Any, *, events: Mapping[str, EventSpec], dispatch: Dispatch,
            lifecycle: ConnectionLifecycle,
            around_event_call: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Wrap ``server``'s two hooks (instance attributes shadowing the class's methods)."""
    check_hooks(server)
    setattr(server, "_trigger_event",  # noqa: B010
            _around_trigger(server, server._trigger_event, events, dispatch, lifecycle))
    setattr(server, "_handle_event_internal",  # noqa: B010
            around_event_call(server._handle_event_internal))


def _around_trigger(server: Any, original: Callable[..., Any], events: Mapping[str, EventSpec],
                    dispatch: Dispatch, lifecycle: ConnectionLifecycle) -> Callable[..., Any]:
    def trigger_event(event: str, namespace: str, *args: Any) -> Any:
        if namespace == "/":
            spec = events.get(event)
            if spec is not None:
                return dispatch(spec, event, args[0], args[1:])
            if event in RESERVED_EVENTS and client_event():
                # a client EVENT packet named like a lifecycle event: never the real thing
                return dispatch(None, event, args[0], args[1:])
        if event == "connect":
            # every namespace: authenticated (and Origin-checked) before any handler
            sid = args[0]
            lifecycle.connect(sid, args[1], args[2] if len(args) > 2 else None, namespace)
            try:
                accepted = original(event, namespace, *args)
            except BaseException:
                lifecycle.disconnect(sid, "refused by the host app", namespace)
                raise
            if accepted is False:  # python-socketio sends no disconnect event then
                lifecycle.disconnect(sid, "refused by the host app", namespace)
            return accepted
        if event == "disconnect":
            try:
                return original(event, namespace, *args)
            finally:
                lifecycle.disconnect(args[0], args[1] if len(args) > 1 else "unknown",
                                     namespace)
        if namespace != "/":
            # a host app's handler: python-socketio delivers events only to connections
            # that passed the connect above; a token past its deadline ends it here
            if not lifecycle.namespace_connection_valid(args[0], namespace):
                return None
            return original(event, namespace, *args)
        if server.handlers.get(namespace, {}).get(event):
            return original(event, namespace, *args)  # a host app's own handler
        return dispatch(None, event, args[0], args[1:])

    return trigger_event


__all__ = ["HooksMissing", "REQUIRED_HOOKS", "check_hooks", "install"]
