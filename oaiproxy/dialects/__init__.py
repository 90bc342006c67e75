"""Tool-calling dialects ("styles"): one module per dialect, chosen from the chat template.

Detection reads the template text for each dialect's own markers, most
specific first (Functionary and Mistral templates also contain Llama or
Hermes-like text), and falls back to the generic JSON envelope that works with
any model. ``--style NAME`` overrides it. See docs/dialects.md.
"""

from __future__ import annotations

from oaiproxy.dialects.base import Style, StyleError
from oaiproxy.dialects.functionary import FunctionaryV31Style, FunctionaryV32Style
from oaiproxy.dialects.generic import GenericJsonSchemaStyle, GenericStyle
from oaiproxy.dialects.hermes import HermesStyle
from oaiproxy.dialects.llama3 import Llama3Style
from oaiproxy.dialects.mistral import MistralNemoStyle

#: detection order: the first dialect whose ``detect`` accepts the template wins
DETECTION_ORDER: tuple[type[Style], ...] = (
    MistralNemoStyle,
    FunctionaryV32Style,
    FunctionaryV31Style,
    Llama3Style,
    HermesStyle,
)

#: every style by its ``--style`` name
STYLES: dict[str, type[Style]] = {
    cls.name: cls
    for cls in (*DETECTION_ORDER, GenericStyle, GenericJsonSchemaStyle)
}


def get_style(name: str) -> type[Style]:
    """The style registered as ``name``; a clear error listing the valid names otherwise."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown style {name!r}; valid styles: {', '.join(sorted(STYLES))}") from None


def detect_style(template_source: str | None) -> type[Style]:
    """The dialect a chat template speaks; the generic scheme when it names none (or there is no template)."""
    if template_source:
        for cls in DETECTION_ORDER:
            if cls.detect(template_source):
                return cls
    return GenericStyle


__all__ = ["DETECTION_ORDER", "STYLES", "Style", "StyleError", "detect_style", "get_style"]
