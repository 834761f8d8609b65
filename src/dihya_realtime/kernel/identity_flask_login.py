"""Who a connection is, for a host app that signs users in with Flask-Login.

With ``DIHYA_RT_FLASK_LOGIN`` on, the Socket.IO handshake is treated as one of the host app's
own requests: Flask-Login's ``current_user`` is resolved from its session cookie (or its
``request_loader``) through the app's ``user_loader``, exactly as a view would see it. A user
who ``is_authenticated`` becomes the :class:`Principal` (``get_id()``, and the roles and
display name read from the attributes named by ``flask_login_roles_attr`` and
``flask_login_name_attr``); anyone else is not signed in here.

It is opt-in rather than detected from a ``LoginManager`` on the app: turning cookie
authentication on for a realtime endpoint is a security decision (the Origin rule of
:func:`~dihya_realtime.kernel.auth.authenticate_connection` then applies) that an upgrade must
not take for a host app silently. Flask-Login is an optional dependency
(``pip install dihya-realtime[flask-login]``), imported only when the setting is on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dihya_realtime.kernel.principal import Principal
from dihya_realtime.kernel.settings import ENV_PREFIX, Settings, SettingsError

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("dihya_realtime")

METHOD = "flask_login"
"""``Principal.method`` (and the audit's ``connect`` details) of a Flask-Login user."""


def require_flask_login(app: Flask) -> None:
    """Start-up check: Flask-Login is installed and ``app`` has its ``LoginManager``.

    Raises :class:`SettingsError` naming what to do, so a misconfiguration stops the start
    rather than refusing every browser later.
    """
    try:
        import flask_login  # noqa: F401
    except ImportError:
        raise SettingsError(
            f"{ENV_PREFIX}FLASK_LOGIN is on but Flask-Login is not installed "
            "(pip install 'dihya-realtime[flask-login]')"
        ) from None
    if getattr(app, "login_manager", None) is None:
        raise SettingsError(
            f"{ENV_PREFIX}FLASK_LOGIN is on but the Flask app has no LoginManager: call "
            "login_manager.init_app(app) before Realtime(app) / rt.init_app(app)"
        )


def _roles(value: Any) -> tuple[str, ...]:
    """A role name, or an iterable of names or of role objects with a string ``name``."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Iterable):
        return ()
    roles = []
    for item in value:
        name = item if isinstance(item, str) else getattr(item, "name", None)
        if isinstance(name, str) and name:
            roles.append(name)
    return tuple(roles)


def flask_login_principal(settings: Settings) -> Principal | None:
    """The signed-in user of the current request as a :class:`Principal`, else ``None``.

    Call it inside the handshake's request context. A ``user_loader`` that raises (its
    database is down…) is logged and counts as not signed in: the connection then falls back
    to anonymous or is refused, never let in as someone.
    """
    from flask_login import current_user

    try:
        user = current_user._get_current_object()
        if user is None or not user.is_authenticated:
            return None
        user_id = user.get_id()
        roles = _roles(getattr(user, settings.flask_login_roles_attr, None))
        name = getattr(user, settings.flask_login_name_attr, None)
    except Exception:
        log.exception("Flask-Login could not load the user of a Socket.IO handshake")
        return None
    if user_id is None or str(user_id) == "":
        return None
    return Principal(
        user_id=str(user_id),
        roles=roles,
        name=name if isinstance(name, str) else None,
        method=METHOD,
    )
