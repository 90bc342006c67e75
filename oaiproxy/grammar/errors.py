"""The error every grammar stage raises for a schema it refuses, and JSON pointers into schemas."""

from __future__ import annotations

from typing import Any


class SchemaError(ValueError):
    """A schema the converter cannot turn into an exact grammar.

    ``keyword`` is the offending keyword (None when the schema as a whole is at
    fault) and ``pointer`` the JSON pointer of the place in the schema.
    """

    def __init__(self, message: str, *, keyword: str | None = None, pointer: str = ""):
        self.keyword = keyword
        self.pointer = pointer
        self.reason = message
        where = pointer or "/"
        super().__init__(f"{message} (at {where}" + (f", keyword '{keyword}')" if keyword else ")"))


def json_pointer(base: str, *parts: Any) -> str:
    out = base
    for p in parts:
        out += "/" + str(p).replace("~", "~0").replace("/", "~1")
    return out
