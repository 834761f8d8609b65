"""Names of the Socket.IO rooms the kernel keeps, shared by every process."""

from __future__ import annotations


def user_room(user_id: str) -> str:
    """The Socket.IO room holding every connection of one user, on every process."""
    return f"user-sids:{user_id}"


__all__ = ["user_room"]
