"""Tool-call ids: the proxy's own, and the 9-character shape Mistral's templates demand."""

from __future__ import annotations

import hashlib
import secrets
import string

_ALNUM = string.ascii_letters + string.digits


def new_call_id() -> str:
    """``call_`` + 24 random alphanumerics: unique per response, as OpenAI's are."""
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


def new_short_call_id() -> str:
    """Mistral's own id shape: 9 alphanumerics."""
    return "".join(secrets.choice(_ALNUM) for _ in range(9))


def short_call_id_for(call_id: str) -> str:
    """A stable 9-character id for a client's id, so a history renders the same every time."""
    if len(call_id) == 9 and call_id.isalnum() and call_id.isascii():
        return call_id
    digest = hashlib.sha256(call_id.encode()).digest()
    return "".join(_ALNUM[b % len(_ALNUM)] for b in digest[:9])


__all__ = ["new_call_id", "new_short_call_id", "short_call_id_for"]
