"""Who is on the other end of a connection or an HTTP call, once authenticated."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user.

    ``expires_at`` is the token's ``exp`` (UNIX seconds) or ``None`` for session/anonymous
    users; ``method`` says how they proved it (``jwt``, ``session``, ``anonymous``, ``api_key``).
    """

    user_id: str
    roles: tuple[str, ...] = ()
    name: str | None = None
    expires_at: float | None = None
    method: str = "jwt"
    claims: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def display_name(self) -> str:
        return self.name or self.user_id

    @property
    def anonymous(self) -> bool:
        return self.method == "anonymous"
