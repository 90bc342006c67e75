"""A brain's own part of a request: its system prompt, rendered per request, and its history depth."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

from oaiproxy.server_tools.config import Brain
from oaiproxy.templating.sandbox import SandboxedTemplate, TemplateError


@lru_cache(maxsize=64)
def compiled_prompt(source: str, name: str) -> SandboxedTemplate:
    """The brain's system prompt, compiled once (a :class:`TemplateError` naming the brain otherwise)."""
    return SandboxedTemplate(source, name=f"brains.{name}.system_prompt")


def system_prompt(brain: Brain, name: str, history: list[dict[str, Any]], *, user: str | None,
                  now: dt.datetime | None = None) -> str:
    """The brain's system prompt for one request: ``date`` (YYYY-MM-DD), ``time`` (HH:MM, UTC),
    ``datetime`` (ISO 8601), ``user``, ``thread`` (the history's role/content) and ``brain``."""
    if not brain.system_prompt:
        return ""
    now = now or dt.datetime.now(dt.UTC)
    thread = [{"role": m.get("role"), "content": m.get("content") or ""} for m in history]
    return compiled_prompt(brain.system_prompt, name).render(
        {"date": now.strftime("%Y-%m-%d"), "time": now.strftime("%H:%M"), "datetime": now.isoformat(timespec="seconds"),
         "user": user, "thread": thread, "brain": name},
        input_chars=sum(len(str(m["content"])) for m in thread))


def recent(messages: list[dict[str, Any]], depth: int) -> list[dict[str, Any]]:
    """The last ``depth`` messages, never starting inside a round of calls: a ``tool`` result whose call
    was cut off goes too (a template cannot render a result without its call)."""
    kept = messages[-depth:]
    while kept and kept[0].get("role") == "tool":
        kept = kept[1:]
    return kept


def brain_messages(brain: Brain, name: str, messages: list[dict[str, Any]], *, user: str | None,
                   now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The request's messages as the brain's model sees them: the client's system messages first, joined
    after the brain's own prompt into one, then the latest ``history_depth`` other messages."""
    system = [m for m in messages if m.get("role") == "system"]
    rest = recent([m for m in messages if m.get("role") != "system"], brain.history_depth)
    texts = [system_prompt(brain, name, rest, user=user, now=now)] + [str(m.get("content") or "") for m in system]
    joined = "\n\n".join(t for t in texts if t)
    return ([{"role": "system", "content": joined}] if joined else []) + rest


__all__ = ["TemplateError", "brain_messages", "compiled_prompt", "recent", "system_prompt"]
