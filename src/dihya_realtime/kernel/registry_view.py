"""The registry as one server sees it: only the events of its enabled features.

Events are declared at import time into one process-wide :class:`Registry` (the docs read
all of them). A server started with ``DIHYA_RT_FEATURES=chat`` must not answer the events of
the features it left off, nor document them on its pages: it sees the registry through a
:class:`RegistryView` that hides every event whose handler lives in a disabled feature's
package. The view is live (an event the host app declares later is seen at once) and costs a
dict lookup and a prefix test per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dihya_realtime.kernel.registry import EventSpec, Registry, ServerEventSpec


class _VisibleEvents(Mapping[str, EventSpec]):
    def __init__(self, events: dict[str, EventSpec], hidden_modules: tuple[str, ...]) -> None:
        self._events = events
        self._hidden = hidden_modules

    def _visible(self, spec: EventSpec) -> bool:
        return not spec.handler.__module__.startswith(self._hidden)

    def __getitem__(self, name: str) -> EventSpec:
        spec = self._events[name]
        if not self._visible(spec):
            raise KeyError(name)
        return spec

    def __iter__(self) -> Iterator[str]:
        return (name for name, spec in list(self._events.items()) if self._visible(spec))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _VisibleServerEvents(Mapping[str, ServerEventSpec]):
    def __init__(self, events: dict[str, ServerEventSpec], hidden: Callable[[], set[str]]
                 ) -> None:
        self._events = events
        self._hidden = hidden

    def __getitem__(self, name: str) -> ServerEventSpec:
        spec = self._events[name]
        if spec.feature in self._hidden():
            raise KeyError(name)
        return spec

    def __iter__(self) -> Iterator[str]:
        hidden = self._hidden()
        return (name for name, spec in list(self._events.items()) if spec.feature not in hidden)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class RegistryView:
    """``registry`` without the events declared in ``hidden_modules`` (module prefixes).

    A server event is hidden when its feature label (``chat``, ``doc`` …) belongs only to
    hidden client events: server events are declared by name, not by handler.
    """

    def __init__(self, registry: Registry, hidden_modules: tuple[str, ...]) -> None:
        self.registry = registry
        self.hidden_modules = hidden_modules
        self._events = _VisibleEvents(registry.events, hidden_modules)
        self._server_events = _VisibleServerEvents(registry.server_events, self._hidden_labels)

    @property
    def events(self) -> Mapping[str, EventSpec]:
        return self._events

    @property
    def server_events(self) -> Mapping[str, ServerEventSpec]:
        return self._server_events

    def event(self, name: str, **kwargs: Any) -> Callable:
        return self.registry.event(name, **kwargs)

    def server_event(self, name: str, schema: Any, doc: str, **kwargs: Any) -> None:
        self.registry.server_event(name, schema, doc, **kwargs)

    def _hidden_labels(self) -> set[str]:
        hidden: set[str] = set()
        shown: set[str] = set()
        for spec in list(self.registry.events.values()):
            if spec.handler.__module__.startswith(self.hidden_modules):
                hidden.add(spec.feature)
            else:
                shown.add(spec.feature)
        return hidden - shown


__all__ = ["RegistryView"]
