"""What a dialect declares about itself for tests and scripts: the templates that speak it and its call texts.

Each dialect module sets ``samples = Samples(...)`` on its style. The test
tables (detection, prompts, grammars, parsers, end to end) and the scripts
loop over :func:`oaiproxy.dialects.registry.sampled_styles` and read these,
so adding a dialect adds its cases everywhere without editing a test.

Template names are file names in llama.cpp's ``models/templates/`` (the test
fixture ``templates_dir``), or ``"default"`` for oaiproxy's own default
template. The first template is the dialect's representative: the one the
end-to-end tests and the benchmark run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: a call as test material: (function name, arguments as JSON text)
Call = tuple[str, str]


def _arguments_only(name: str, arguments: str) -> str:
    return arguments[1:-1]


def json_call(name: str, arguments: str, key: str = "arguments") -> str:
    """``{"name": NAME, "arguments": ARGS}``, the JSON call object several dialects write (json.dumps spacing)."""
    return f"{{{json.dumps('name')}: {json.dumps(name)}, {json.dumps(key)}: {arguments}}}"


@dataclass(frozen=True)
class SampleOutput:
    """A model output and what the dialect's parser must read from it (under ``tool_choice`` auto)."""

    text: str
    content: str
    #: (name, decoded arguments) of each call, in order
    calls: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Samples:
    """A dialect's test material; see the module docstring."""

    #: real chat templates that speak this dialect (detection must pick it); the first is the representative
    templates: tuple[str, ...]
    #: a whole answer made of these calls, as the required-mode grammar wants it
    calls: Callable[[Sequence[Call]], str]
    #: the text that follows free content under ``auto`` (from the trigger on); None: ``calls`` serves
    auto_calls: Callable[[Sequence[Call]], str] | None = None
    #: a fragment of how the chat template renders a past call (name, arguments) in the history
    history_call: Callable[[str, str], str] = _arguments_only
    #: a past call as this dialect spells it out for a template without tool support (a prefix suffices);
    #: None for a dialect that has no such fallback
    fallback_call: Callable[[str, str], str] | None = None
    #: the required-mode answer holds one call only (Llama's bare JSON form)
    one_call_per_answer: bool = False
    #: ``auto`` is a lazy grammar woken by triggers (False: constrained from the first token)
    lazy_auto: bool = True
    #: tokens enough for one whole call of a small tool on the default model (end-to-end n_predict)
    call_tokens: int = 48
    #: templates detection must give this dialect without being used in the prompt tests
    also_detected: tuple[str, ...] = ()
    #: example outputs and the calls they parse to
    outputs: tuple[SampleOutput, ...] = ()
    #: how a call's text spells an argument key (the JSON key by default), e.g. ``<parameter=city>``
    argument_key: Callable[[str], str] = json.dumps

    @property
    def representative(self) -> str:
        return self.templates[0]

    def auto_text(self, calls: Sequence[Call]) -> str:
        """The calls as they follow free text under ``auto``."""
        return (self.auto_calls or self.calls)(calls)


__all__ = ["Call", "SampleOutput", "Samples", "json_call"]
