"""A Python client with the wire contract of dihya-realtime (for workers, bots and tests).

Built on python-socketio's client, it adds what makes the protocol worth having:

- ``call(event, payload)`` returns the reply's ``data`` or raises :class:`RealtimeError`
  (also ``timeout``, and ``disconnected`` when the connection closed before the reply);
- ``subscribe(channel, on_publication=…)``: every publication once, in order. After any
  reconnect each subscription is made again with ``since`` (its last offset and epoch) and the
  missed publications arrive first; a live offset gap is filled from ``history``; when the
  server cannot recover, ``on_recovery_failed`` is called (never a silent gap);
- ``get_token()`` is asked for the token at every (re)connect and on ``auth:expiring`` (then
  ``auth:refresh`` is sent; the connection stays up);
- ``on(event, fn)`` for server events, ``resync`` included.

Threads: python-socketio hands every incoming message to a new thread, so arrival order is
not guaranteed. Everything is therefore funnelled into one dispatcher thread that runs the
channel bookkeeping and every callback, one at a time, in arrival order; offsets repair what
the threads reordered. A callback may use ``call`` (replies are read by other threads).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import socketio

from dihya_realtime.client.errors import DISCONNECTED, TIMEOUT, RealtimeError, unwrap
from dihya_realtime.client.positions import Position
from dihya_realtime.client.subscription import (
    PublicationHandler,
    RecoveryFailed,
    RecoveryHandler,
    Subscription,
)

log = logging.getLogger("dihya_realtime.client")

TASKS_KEPT = 10_000
"""Incoming messages waiting for the dispatcher. A publication past this is dropped and read
back from history; any other event waits (back-pressure on the reading threads)."""
# not a refusal: the connection went away first; the next (re)connect subscribes again
RETRY_AT_NEXT_CONNECT = frozenset({DISCONNECTED, TIMEOUT})
INTERNAL_EVENTS = frozenset({"publication", "unsubscribed", "auth:expiring"})

TokenSource = Callable[[], str | None]
Handler = Callable[..., Any]


class Client:
    """One connection to a dihya-realtime server. Use as a context manager or ``close()``.

    ``token`` or ``get_token`` (called at every connect and on ``auth:expiring``);
    ``ack_timeout``: seconds a ``call`` waits for its reply; ``reconnect``: try again, with
    backoff from ``reconnect_delay`` to ``reconnect_delay_max`` seconds, after any disconnect
    that ``close()`` did not ask for (a server restart included).
    """

    def __init__(self, url: str, *, token: str | None = None,
                 get_token: TokenSource | None = None,
                 transports: tuple[str, ...] = ("websocket",), ack_timeout: float = 10.0,
                 reconnect: bool = True, reconnect_delay: float = 0.2,
                 reconnect_delay_max: float = 5.0, headers: dict[str, str] | None = None,
                 ) -> None:
        self.url = url
        self.ack_timeout = ack_timeout
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self._token = token
        self._get_token = get_token
        self._transports = list(transports)
        self._headers = dict(headers or {})
        self._sio = socketio.Client(reconnection=False, logger=False, engineio_logger=False)
        self._lock = threading.RLock()
        self._subs: dict[str, Subscription] = {}
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._pending: dict[int, threading.Event] = {}
        self._overflowed: set[str] = set()
        self._tasks: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.Queue(maxsize=TASKS_KEPT))
        self._closed = threading.Event()
        self._ever_connected = False
        self._refusal: Any = None
        self._reconnector: threading.Thread | None = None
        self._worker = threading.Thread(target=self._run, name="dihya-rt-client", daemon=True)
        self._worker.start()
        self._wire()

    # -- lifetime
    def connect(self, timeout: float = 10.0) -> Client:
        """Connect now; a refusal raises :class:`RealtimeError` with the server's code."""
        self._refusal = None
        try:
            self._sio.connect(self.url, headers=self._headers, auth=self._auth,
                              transports=self._transports, wait_timeout=timeout)
        except socketio.exceptions.ConnectionError as exc:
            if isinstance(self._refusal, dict):
                raise RealtimeError.from_error(self._refusal) from exc
            raise RealtimeError("unavailable", f"cannot connect to {self.url}: {exc}") from exc
        return self

    def close(self) -> None:
        """Disconnect for good: no reconnect; pending calls fail with ``disconnected``."""
        self._closed.set()
        with contextlib.suppress(Exception):
            self._sio.disconnect()
        self._fail_pending()
        with contextlib.suppress(queue.Full):
            self._tasks.put(None, timeout=1)
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout=5)
        if self._reconnector is not None and self._reconnector is not threading.current_thread():
            self._reconnector.join(timeout=5)

    def __enter__(self) -> Client:
        if not self.connected:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """True once the server accepted the handshake (python-socketio's own ``connected``
        turns true only after its ``connect`` handlers ran, too late for resubscribing)."""
        return "/" in self._sio.namespaces

    @property
    def sid(self) -> str | None:
        return self._sio.get_sid() if self.connected else None

    @property
    def token(self) -> str | None:
        """The token the last handshake or ``auth:refresh`` presented."""
        return self._token

    # -- calls
    def call(self, event: str, payload: Any = None, timeout: float | None = None) -> Any:
        """Emit with an ack; the reply's ``data``, or :class:`RealtimeError`."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def ack(*args: Any) -> None:
            box["reply"] = args[0] if args else None
            done.set()

        with self._lock:
            if not self.connected:
                raise RealtimeError(DISCONNECTED, f"not connected: {event} was not sent")
            self._pending[id(done)] = done
        try:
            try:
                self._sio.emit(event, {} if payload is None else payload, callback=ack)
            except socketio.exceptions.SocketIOError as exc:
                raise RealtimeError(DISCONNECTED, f"{event} was not sent: {exc}") from exc
            if not done.wait(self.ack_timeout if timeout is None else timeout):
                raise RealtimeError(TIMEOUT, f"no reply to {event}")
        finally:
            with self._lock:
                self._pending.pop(id(done), None)
        if "reply" not in box:
            raise RealtimeError(DISCONNECTED, f"the connection closed before the reply to {event}")
        return unwrap(event, box["reply"])

    def emit(self, event: str, payload: Any = None) -> None:
        """Send without waiting (a failure comes back as the ``error`` event)."""
        self._sio.emit(event, {} if payload is None else payload)

    # -- channels
    def subscribe(self, channel: str, on_publication: PublicationHandler, *,
                  on_recovery_failed: RecoveryHandler | None = None,
                  since: Position | dict[str, Any] | None = None) -> Subscription:
        """Subscribe (now if connected, else at connect); ``sub.ready`` has the reply.

        ``since`` (``{"offset", "epoch"}``) starts after a position the caller already has.
        """
        if isinstance(since, dict):
            since = Position(int(since["offset"]), str(since["epoch"]))
        with self._lock:
            if channel in self._subs:
                raise ValueError(f"already subscribed to {channel!r}")
            sub = Subscription(self, channel, on_publication, on_recovery_failed, since)
            self._subs[channel] = sub
        if self.connected:
            self._enqueue(self._subscribe, sub)
        return sub

    def unsubscribe(self, channel: str, timeout: float | None = None) -> None:
        with self._lock:
            sub = self._subs.pop(channel, None)
        if sub is not None:
            sub.active = False
            sub.closed_reason = "client"
        if self.connected:
            self.call("unsubscribe", {"channel": channel}, timeout=timeout)

    def subscription(self, channel: str) -> Subscription | None:
        with self._lock:
            return self._subs.get(channel)

    # -- server events
    def on(self, event: str, fn: Handler) -> Handler:
        """Call ``fn(data)`` for each server event ``event`` (on the dispatcher thread).

        Besides the server's events: ``connect`` (``{"reconnect": bool}``, after the
        subscriptions were made again) and ``disconnect`` (the reason). ``resync`` means live
        events may have been missed: re-read what you hold (channels are caught up already).
        """
        with self._lock:
            self._handlers[event].append(fn)
        return fn

    def off(self, event: str, fn: Handler) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._handlers[event].remove(fn)

    # -- the socket's side (python-socketio threads)
    def _wire(self) -> None:
        sio = self._sio
        sio.on("connect", self._on_connect)
        sio.on("connect_error", self._on_connect_error)
        sio.on("disconnect", self._on_disconnect)
        sio.on("*", self._on_event)

    def _auth(self) -> dict[str, Any]:
        if self._get_token is not None:
            try:
                self._token = self._get_token()
            except Exception:  # a broken token source must not kill the reconnect loop
                log.exception("get_token failed; using the previous token")
        return {"token": self._token} if self._token else {}

    def _on_connect(self) -> None:
        reconnect = self._ever_connected
        self._ever_connected = True
        self._enqueue(self._after_connect, reconnect)

    def _on_connect_error(self, data: Any = None) -> None:
        self._refusal = data

    def _on_disconnect(self, reason: Any = None) -> None:
        self._fail_pending()
        if not self._closed.is_set():
            self._enqueue(self._dispatch, "disconnect", reason)
        if self.reconnect and not self._closed.is_set():
            with self._lock:
                if self._reconnector is None or not self._reconnector.is_alive():
                    self._reconnector = threading.Thread(
                        target=self._reconnect_loop, name="dihya-rt-reconnect", daemon=True)
                    self._reconnector.start()

    def _on_event(self, event: str, *args: Any) -> None:
        data = args[0] if args else None
        if event == "publication" and isinstance(data, dict):
            try:
                self._tasks.put_nowait((self._on_publication, (data,)))
            except queue.Full:  # read back from history once the dispatcher catches up
                with self._lock:
                    if data.get("channel") in self._subs:
                        self._overflowed.add(data["channel"])
            return
        self._enqueue(self._on_server_event, event, data)

    def _reconnect_loop(self) -> None:
        delay = self.reconnect_delay
        while not self._closed.wait(delay * random.uniform(0.75, 1.25)):
            if self.connected:
                return
            try:
                self._sio.connect(self.url, headers=self._headers, auth=self._auth,
                                  transports=self._transports, wait_timeout=10)
                return
            except (socketio.exceptions.ConnectionError, ValueError) as exc:
                log.info("reconnect to %s failed: %s", self.url, exc)
                delay = min(delay * 2, self.reconnect_delay_max)

    def _fail_pending(self) -> None:
        with self._lock:
            pending = list(self._pending.values())
        for done in pending:
            done.set()  # no "reply" in its box: the call raises `disconnected`

    def _enqueue(self, fn: Callable[..., None], *args: Any) -> None:
        if not self._closed.is_set():
            self._tasks.put((fn, args))

    # -- the dispatcher thread
    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None or self._closed.is_set():
                return
            fn, args = task
            try:
                fn(*args)
            except Exception:
                log.exception("dihya-realtime client: %s failed", getattr(fn, "__name__", fn))
            if self._overflowed and self._tasks.empty():
                self._catch_up_overflowed()

    def _catch_up_overflowed(self) -> None:
        with self._lock:
            channels, self._overflowed = self._overflowed, set()
            subs = [self._subs[c] for c in channels if c in self._subs]
        for sub in subs:
            self._read_history(sub)

    def _after_connect(self, reconnect: bool) -> None:
        with self._lock:
            subs = list(self._subs.values())
        for sub in subs:
            self._subscribe(sub)
        self._dispatch("connect", {"reconnect": reconnect})

    def _subscribe(self, sub: Subscription) -> None:
        """Subscribe, with ``since`` once there is a position; deliver what was missed."""
        if not sub.active:
            return
        since = sub.stream.position
        payload: dict[str, Any] = {"channel": sub.channel}
        if since is not None:
            payload["since"] = since.to_wire()
        try:
            data = self.call("subscribe", payload)
        except RealtimeError as exc:
            if exc.code == TIMEOUT and self.connected:
                self._enqueue(self._subscribe, sub)
            elif exc.code not in RETRY_AT_NEXT_CONNECT:
                self._drop(sub, exc.code)
                if not sub.ready.done():
                    sub.ready.set_exception(exc)
            return
        if since is not None and not data.get("recovered"):
            sub.stream.advance(data["offset"], data["epoch"])
            self._recovery_failed(sub, since, "not_recovered")
        else:
            for pub in data.get("publications") or ():
                self._deliver(sub, pub)
            if data.get("more"):
                self._read_history(sub)
            sub.stream.advance(data["offset"], data["epoch"])
        if not sub.ready.done():
            sub.ready.set_result(data)

    def _on_publication(self, pub: dict[str, Any]) -> None:
        if not (isinstance(pub.get("offset"), int) and isinstance(pub.get("epoch"), str)):
            log.warning("publication without offset/epoch ignored: %r", pub)
            return
        with self._lock:
            sub = self._subs.get(pub.get("channel"))  # type: ignore[arg-type]
        if sub is not None and sub.active:
            stream = sub.stream
            if stream.is_gap(pub):
                stream.start_holding()
                stream.hold(pub)
                self._read_history(sub)
                for held in stream.release():
                    self._deliver(sub, held)
            else:
                self._deliver(sub, pub)
        self._dispatch("publication", pub)

    def _read_history(self, sub: Subscription) -> None:
        """Read ``history`` after the position, page by page, until it is caught up."""
        while sub.active and sub.stream.position is not None:
            since = sub.stream.position
            try:
                page = self.call("history", {"channel": sub.channel, "since": since.to_wire()})
            except RealtimeError as exc:
                if exc.code not in RETRY_AT_NEXT_CONNECT:  # else: the reconnect resubscribes
                    self._recovery_failed(sub, since, "history")
                return
            if not page.get("recovered"):
                if not sub.stream.holding:  # else the held publications move it forward
                    sub.stream.advance(page["offset"], page["epoch"])
                self._recovery_failed(sub, since, "history")
                return
            pubs = page.get("publications") or []
            for pub in pubs:
                self._deliver(sub, pub)
            if not page.get("more") or not pubs:
                return

    def _deliver(self, sub: Subscription, pub: dict[str, Any]) -> None:
        if sub.active and sub.stream.accept(pub):
            try:
                sub.on_publication(pub)
            except Exception:
                log.exception("on_publication of %s failed", sub.channel)

    def _recovery_failed(self, sub: Subscription, since: Position | None, reason: str) -> None:
        info = RecoveryFailed(sub.channel, since, sub.stream.position, reason)
        if sub.on_recovery_failed is None:
            log.warning("recovery failed on %s (%s): publications may be missing",
                        sub.channel, reason)
            return
        try:
            sub.on_recovery_failed(info)
        except Exception:
            log.exception("on_recovery_failed of %s failed", sub.channel)

    def _drop(self, sub: Subscription, reason: str) -> None:
        sub.active = False
        sub.closed_reason = reason
        with self._lock:
            if self._subs.get(sub.channel) is sub:
                del self._subs[sub.channel]

    def _on_server_event(self, event: str, data: Any) -> None:
        if event == "unsubscribed" and isinstance(data, dict):
            with self._lock:
                sub = self._subs.get(data.get("channel"))  # type: ignore[arg-type]
            if sub is not None and data.get("reason") == "recover":
                self._subscribe(sub)  # with `since`; `recovered: false` → on_recovery_failed
            elif sub is not None:
                self._drop(sub, str(data.get("reason")))
        elif event == "auth:expiring":
            self._refresh_token()
        self._dispatch(event, data)

    def _refresh_token(self) -> None:
        if self._get_token is None:
            return
        try:
            token = self._get_token()
        except Exception:
            log.exception("get_token failed on auth:expiring")
            return
        if not token:
            return
        self._token = token
        try:
            self.call("auth:refresh", {"token": token})
        except RealtimeError as exc:
            log.warning("auth:refresh refused: %s", exc)

    def _dispatch(self, event: str, data: Any) -> None:
        with self._lock:
            handlers = list(self._handlers.get(event, ()))
        for fn in handlers:
            try:
                fn(data)
            except Exception:
                log.exception("handler of %s failed", event)
