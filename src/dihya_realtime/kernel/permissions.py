"""Roles → permissions, from the ``[roles]`` table of the configuration.

A role grants a list of permissions; ``"*"`` grants everything and ``"chat:*"`` every
permission of the ``chat`` feature. A user's permission set is computed once per connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class PermissionSet:
    """The permissions one user holds, checked in O(1)."""

    __slots__ = ("_exact", "_prefixes", "_all")

    def __init__(self, granted: Iterable[str]) -> None:
        self._exact: set[str] = set()
        self._prefixes: set[str] = set()
        self._all = False
        for perm in granted:
            if perm == "*":
                self._all = True
            elif perm.endswith(":*"):
                self._prefixes.add(perm[:-1])
            else:
                self._exact.add(perm)

    def allows(self, permission: str | None) -> bool:
        if permission is None or self._all or permission in self._exact:
            return True
        head, sep, _ = permission.partition(":")
        return bool(sep) and (head + ":") in self._prefixes

    def __contains__(self, permission: str) -> bool:
        return self.allows(permission)


class RolePolicy:
    """Resolves a user's roles into a :class:`PermissionSet`; unknown roles grant nothing."""

    def __init__(self, roles: Mapping[str, Iterable[str]]) -> None:
        self._roles = {name: tuple(perms) for name, perms in roles.items()}

    def permissions_for(self, roles: Iterable[str]) -> PermissionSet:
        granted: list[str] = []
        for role in roles:
            granted.extend(self._roles.get(role, ()))
        return PermissionSet(granted)
