"""Roles → permissions: exact grants, ``feature:*`` prefixes, ``*``, unknown roles."""

from __future__ import annotations

import pytest

from dihya_realtime.kernel.permissions import PermissionSet, RolePolicy
from dihya_realtime.kernel.settings import DEFAULT_ROLES


def test_an_exact_grant_allows_that_permission_only():
    perms = PermissionSet(["chat:write"])
    assert perms.allows("chat:write")
    assert not perms.allows("chat:moderate")
    assert not perms.allows("chat")


def test_star_allows_every_permission():
    perms = PermissionSet(["*"])
    assert all(perms.allows(p) for p in ("chat:write", "doc:admin", "anything"))


def test_a_feature_wildcard_allows_that_feature_and_no_other():
    perms = PermissionSet(["chat:*"])
    assert perms.allows("chat:write") and perms.allows("chat:moderate")
    assert not perms.allows("chatty:write")  # a prefix is the whole feature name
    assert not perms.allows("doc:read")
    assert not perms.allows("chat")  # no feature part: not covered by chat:*


def test_an_event_without_a_permission_is_allowed_to_everyone():
    assert PermissionSet([]).allows(None)


@pytest.mark.parametrize("permission", ["chat:write", "doc:read"])
def test_in_is_allows(permission):
    perms = PermissionSet(["chat:write"])
    assert (permission in perms) is perms.allows(permission)


def test_a_policy_unions_the_permissions_of_every_role():
    policy = RolePolicy({"writer": ["chat:write"], "reader": ["doc:read"]})
    perms = policy.permissions_for(["writer", "reader"])
    assert perms.allows("chat:write") and perms.allows("doc:read")
    assert not perms.allows("doc:edit")


def test_unknown_roles_grant_nothing():
    policy = RolePolicy({"writer": ["chat:write"]})
    assert not policy.permissions_for(["root", "admin"]).allows("chat:write")
    assert not policy.permissions_for([]).allows("chat:write")


def test_default_roles_keep_moderation_from_plain_users():
    policy = RolePolicy(DEFAULT_ROLES)
    assert not policy.permissions_for(["user"]).allows("chat:moderate")
    assert policy.permissions_for(["moderator"]).allows("chat:moderate")
    assert policy.permissions_for(["admin"]).allows("doc:admin")
