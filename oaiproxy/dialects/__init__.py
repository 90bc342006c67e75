"""Tool-calling dialects ("styles"): one module per dialect, chosen from the chat template.

Each dialect module registers its style with one ``@register(...)`` line
(:mod:`oaiproxy.dialects.registry`), giving its own detection priority; the
registry imports every public module here, so a new dialect is one new module.
Detection asks the styles most specific first and falls back to the generic
JSON envelope that works with any model. ``--style NAME`` overrides it. See
docs/dialects.md.
"""

from __future__ import annotations

from oaiproxy.dialects.base import Style, StyleError
from oaiproxy.dialects.registry import STYLES, detect_style, detection_order, discover, get_style

discover()

__all__ = ["STYLES", "Style", "StyleError", "detect_style", "detection_order", "get_style"]
