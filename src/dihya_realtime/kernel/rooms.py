"""Names of the Socket.IO rooms and broker topics the kernel keeps, shared by every process."""

from __future__ import annotations

USER_TOPIC_PREFIX = "__user:"
"""Broker topics of user-addressed messages (``Broker.send``), one per user."""


def user_room(user_id: str) -> str:
    """The Socket.IO room holding every connection of one user, on every process."""
    return f"user-sids:{user_id}"


def user_topic(user_id: str) -> str:
    """The broker topic of ``user_id``'s messages: watched by a process exactly while the user
    has a connection on it (:mod:`dihya_realtime.kernel.user_interest`)."""
    return USER_TOPIC_PREFIX + str(user_id)


def user_of_topic(topic: str) -> str | None:
    """The user a :func:`user_topic` names, ``None`` for any other topic."""
    return topic[len(USER_TOPIC_PREFIX):] if topic.startswith(USER_TOPIC_PREFIX) else None


__all__ = ["USER_TOPIC_PREFIX", "user_of_topic", "user_room", "user_topic"]
