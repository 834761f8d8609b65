"""The built-in features, one package each: service, events (and what else it needs).

A feature package's ``events`` module is a :class:`~.feature.Feature`: it declares its events
when imported, and its ``setup(rt)`` attaches its service to the
:class:`~dihya_realtime.realtime.Realtime` (``rt.channels`` …), its hooks and its HTTP routes
(``http.py``). Packages are discovered, so adding a feature means adding a package here. The
kernel never imports this package.

``DIHYA_RT_FEATURES`` (default ``all``) names the features a server runs. A feature left off
registers no event (the server answers its events like any unknown name), no HTTP route, no
migration branch and no element of the demo page. ``session`` (``auth:refresh``) is part of
every server: a connection's token must be refreshable whatever else runs.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from dihya_realtime.features.feature import Feature
from dihya_realtime.kernel.settings import SettingsError

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

ALWAYS_ON = ("session",)
"""Features every server runs, whatever ``DIHYA_RT_FEATURES`` says."""


def feature_names() -> list[str]:
    """Every built-in feature, session first, in name order after that."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__)
                   if m.ispkg and not m.name.startswith("_"))
    names.sort(key=lambda n: (n != "session", n))
    return names


def feature_module(name: str) -> Feature:
    """A feature's events module (importing it declares its events).

    Raises :class:`TypeError` when it is no :class:`Feature` (no ``setup``): a package under
    ``features/`` that does not say how it attaches would otherwise be skipped unseen.
    """
    module = importlib.import_module(f"{__name__}.{name}.events")
    if not isinstance(module, Feature):
        raise TypeError(f"{module.__name__} defines no setup(rt): it is no Feature")
    return module


def feature_modules() -> list[Feature]:
    """Every feature's events module (importing one declares its events)."""
    return [feature_module(name) for name in feature_names()]


def enabled_features(requested: list[str]) -> list[str]:
    """The features ``DIHYA_RT_FEATURES`` turns on, in :func:`feature_names` order.

    Raises :class:`SettingsError` for a name that is no feature: a typo must not quietly run
    a server without what its operator asked for.
    """
    known = feature_names()
    wanted = {name.strip().lower() for name in requested if name.strip()}
    if "all" in wanted:
        return known
    unknown = sorted(wanted - set(known))
    if unknown:
        raise SettingsError(
            f"DIHYA_RT_FEATURES: unknown feature(s) {', '.join(unknown)}; "
            f"known: all, {', '.join(n for n in known if n not in ALWAYS_ON)}")
    return [name for name in known if name in wanted or name in ALWAYS_ON]


def hidden_feature_modules(requested: list[str]) -> tuple[str, ...]:
    """Module prefixes of the features left off (empty when every feature runs)."""
    enabled = set(enabled_features(requested))
    return tuple(f"{__name__}.{name}." for name in feature_names() if name not in enabled)


def migration_branches(requested: list[str]) -> list[str]:
    """The Alembic branch labels to upgrade: the foundation, the outbox (transactional publish,
    whatever runs) and each enabled feature's own (a feature without tables has none)."""
    return ["foundation", "outbox", *enabled_features(requested)]


def setup_features(rt: Realtime) -> None:
    """Run ``setup(rt)`` of every enabled feature: services, hooks, HTTP routes."""
    modules = dict(zip(feature_names(), feature_modules(), strict=True))
    for name in enabled_features(rt.settings.features):
        modules[name].setup(rt)


__all__ = ["ALWAYS_ON", "Feature", "enabled_features", "feature_module", "feature_modules",
           "feature_names", "hidden_feature_modules", "migration_branches", "setup_features"]
