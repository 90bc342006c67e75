"""Mistral Nemo / Ministral 3 / Devstral / Small 3.2: ``[TOOL_CALLS][{…}]`` and v11 ``[TOOL_CALLS]NAME[ARGS]{…}``.

Mistral Nemo (``mistral-nemo``): ``[TOOL_CALLS][{"name": …, "arguments": {…}, "id": "a1B2c3D4e"}]``.
All calls of a turn form one JSON array after the ``[TOOL_CALLS]`` token, and
each carries an id the model writes itself: 9 alphanumerics, which Nemo's
template also demands of every id in the history (client ids of another shape
are mapped to stable 9-character ones). Because the id follows the arguments,
a call is announced once its object is complete rather than streamed.

Mistral's v11 tokenizer (``mistral-v11``: Ministral 3, Devstral, Magistral)
writes each call as its own section, ``[TOOL_CALLS]NAME[ARGS]{…}``, calls back
to back; Mistral Small 3.2 (``mistral-v11-ids``) puts ``[CALL_ID]`` and the
model's 9-character id between the name and ``[ARGS]``. There the call is
announced at ``[ARGS]`` and its arguments stream as written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects._jsonscan import Path
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.call_ids import new_short_call_id, short_call_id_for
from oaiproxy.dialects.gbnf import SHORT_WS, add_tool_args, alternatives, json_call_body, lit
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples, json_call
from oaiproxy.dialects.streaming import CallObjectReader, JsonCallSection, partial_word_at_end
from oaiproxy.grammar import GrammarBuilder

TOOL_CALLS = "[TOOL_CALLS]"
_SAMPLE_IDS = ("a1B2c3D4e", "Z9y8X7w6v", "k3k3k3k3k", "m4M4m4M4m")


class MistralParser(JsonCallSection):
    """Content, then ``[TOOL_CALLS]`` and one JSON array of calls."""

    triggers = (TOOL_CALLS,)

    def _enter(self, trigger: str) -> None:
        self._mode = "calls"
        self._begin_json(trigger, None)
        self._readers: dict[int, CallObjectReader] = {}

    def _on_char(self, ch: str, path: Path | None, completed: list[Path]) -> None:
        if path is not None and len(path) >= 1:
            index = path[0]
            if isinstance(index, int) and index not in self._readers:
                self._readers[index] = CallObjectReader(
                    self, (index,), id_key="id", stream=False, make_id=new_short_call_id)
                self._follow(self._readers[index])
        for reader in list(self._readers.values()):
            if not reader.done:
                reader.on_char(ch, path, completed)

    def _section(self) -> None:
        if self._scan_json(self._on_char):
            self._mode = "after"

    def _end_section(self) -> None:
        if self._mode == "calls":
            self._abort_calls(self._readers.values())
        self._buf = ""


@register(detect_priority=50)
class MistralNemoStyle(DialectStyle):
    name = "mistral-nemo"
    rule_prefix = "mistral"
    fallback_prompt = "tools-mistral.jinja"
    special_tokens = (TOOL_CALLS,)
    samples = Samples(
        templates=("mistralai-Mistral-Nemo-Instruct-2407.jinja",),
        calls=lambda calls: TOOL_CALLS + "[" + ", ".join(
            json_call(n, a)[:-1] + f', "id": "{i}"}}' for (n, a), i in zip(calls, _SAMPLE_IDS, strict=False)) + "]",
        # the history call's id is the client's, mapped to 9 characters
        history_call=lambda n, a: f'{TOOL_CALLS}[{json_call(n, a)[:-1]}, "id": "',
        fallback_call=lambda n, a: f'{TOOL_CALLS}[{json_call(n, a)[:-1]}, "id": "',
        call_tokens=64,  # the model's 9-character id follows the arguments
        outputs=(
            SampleOutput('Let me see.[TOOL_CALLS][{"name": "f", "arguments": {"a": 1}, "id": "a1B2c3D4e"}, '
                         '{"name": "g", "arguments": {}, "id": "Z9y8X7w6v"}]', "Let me see.",
                         (("f", {"a": 1}), ("g", {}))),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        # later Mistral templates write [TOOL_CALLS]name[ARGS]{…} instead of a JSON array
        return TOOL_CALLS in template_source and "[ARGS]" not in template_source \
            and "[CALL_ID]" not in template_source

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """``[TOOL_CALLS]`` and one JSON array of up to ``max_calls`` calls, each with a 9-character id."""
        ws = builder.add_rule("mistral-ws", SHORT_WS)
        call_id = builder.add_rule("mistral-id", f'{lit(json.dumps("id"))} {ws} ":" {ws} "\\"" [a-zA-Z0-9]{{9}} "\\""')
        args = add_tool_args(builder, tools, "mistral")
        call = alternatives(builder, "mistral-call", [
            builder.add_rule(f"mistral-tool{i}-call",
                             json_call_body(spec.name, args[spec.name], ws, tail=f'"," {ws} {call_id}'))
            for i, spec in tools.indexed])
        more = tools.max_calls - 1
        rest = f' ( "," {ws} {call} ){{0,{more}}}' if more else ""
        return builder.add_rule("mistral-calls", f'{lit(TOOL_CALLS)} "[" {ws} {call}{rest} {ws} "]"')

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": TOOL_CALLS}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return MistralParser(enabled=tools.mode != "none")

    def map_call_id(self, call_id: str) -> str:
        return short_call_id_for(call_id)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return (f'{TOOL_CALLS}[{{"name": {json.dumps(name)}, "arguments": {arguments}, '
                f'"id": {json.dumps(short_call_id_for(call_id or name))}}}]')


# -- Mistral v11: [TOOL_CALLS]NAME[ARGS]{…} ------------------------------------------------------

ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
#: the longest name the v11 parser waits for before deciding the text is no call
_MAX_NAME = 128


class MistralV11Parser(JsonCallSection):
    """Content, then ``[TOOL_CALLS]NAME[ARGS]{…}`` calls, one after another (``[CALL_ID]ID`` before
    ``[ARGS]`` with ``call_ids``). The call is announced at ``[ARGS]`` (its id is known by then) and
    its arguments stream as written. A name or id that is not one (whitespace, too long) makes the
    text read so far content again."""

    triggers = (TOOL_CALLS,)

    def __init__(self, enabled: bool = True, call_ids: bool = False) -> None:
        super().__init__(enabled)
        self._call_ids = call_ids
        self._name = ""
        #: the call's text read since the trigger (content again if it turns out not to be a call)
        self._read = ""

    def _enter(self, trigger: str) -> None:
        self._read = trigger
        self._mode = "name"

    def _section(self) -> None:
        if self._mode == "name":
            name = self._field(CALL_ID if self._call_ids else ARGS, _MAX_NAME)
            if name is not None:
                self._name = name
                if self._call_ids:
                    self._mode = "id"
                else:
                    self._start(None)
        elif self._mode == "id":
            call_id = self._field(ARGS, 9)
            if call_id is not None:
                fresh = len(call_id) == 9 and call_id.isalnum() and not self.id_taken(call_id)
                self._start(call_id if fresh else new_short_call_id())
        elif self._mode == "args" and self._stream_arguments():
            self._open_call = None
            self._mode = "after"

    def _field(self, marker: str, limit: int) -> str | None:
        """The text before ``marker``, both consumed; None while undecided or when it cannot be that
        field (then everything read since the trigger is content and the rest is scanned again)."""
        end = self._buf.find(marker)
        field = self._buf[:end] if end >= 0 else self._buf[:len(self._buf) - partial_word_at_end(self._buf, (marker,))]
        if len(field) > limit or any(ch.isspace() or ch in "[]" for ch in field) or (end == 0):
            self.emit_content(self._read)
            self._mode = "content"
            return None
        if end < 0:
            return None
        self._read += self._buf[:end + len(marker)]
        self._buf = self._buf[end + len(marker):]
        return field

    def _start(self, call_id: str | None) -> None:
        self._begin_arguments(self.start_call(self._name, call_id))
        self._mode = "args"

    def _end_section(self) -> None:
        if self._mode in ("name", "id"):
            # a name or id cut off (n_predict): a call that never got its arguments
            self.truncated = self._mode == "id" or bool(self._buf)
            self.emit_content(self._read + self._buf)
        elif self._mode == "args":
            self.truncated = True
        self._buf = ""


def _v11_calls(calls: Sequence[Call], ids: bool = False) -> str:
    return "".join(f"{TOOL_CALLS}{n}{CALL_ID + i if ids else ''}{ARGS}{a}"
                   for (n, a), i in zip(calls, _SAMPLE_IDS * 2, strict=False))


@register(detect_priority=93)
class MistralV11Style(DialectStyle):
    """Mistral's v11 tokenizer format (Ministral 3, Devstral, Magistral): ``[TOOL_CALLS]NAME[ARGS]{…}``.

    Each call is its own ``[TOOL_CALLS]`` section: the name as plain text, then
    ``[ARGS]`` and the arguments as JSON; parallel calls follow each other
    without a separator, as the templates render them.
    """

    name = "mistral-v11"
    rule_prefix = "mistral11"
    fallback_prompt = "tools-mistral-v11.jinja"
    special_tokens: tuple[str, ...] = (TOOL_CALLS, ARGS)
    #: whether each call carries a ``[CALL_ID]`` (Mistral Small 3.2)
    call_ids = False
    samples = Samples(
        templates=("mistralai-Ministral-3-14B-Reasoning-2512.jinja", "unsloth-mistral-Devstral-Small-2507.jinja"),
        calls=_v11_calls,
        history_call=lambda n, a: f"{TOOL_CALLS}{n}{ARGS}{a}",
        fallback_call=lambda n, a: f"{TOOL_CALLS}{n}{ARGS}{a}",
        outputs=(
            SampleOutput('Let me see.[TOOL_CALLS]f[ARGS]{"a": 1}[TOOL_CALLS]g[ARGS]{}', "Let me see.",
                         (("f", {"a": 1}), ("g", {}))),
            SampleOutput("[TOOL_CALLS] is a token, not a call.", "[TOOL_CALLS] is a token, not a call."),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return TOOL_CALLS in template_source and ARGS in template_source and CALL_ID not in template_source

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """``[TOOL_CALLS]NAME[ARGS]{…}`` (``[CALL_ID]`` and 9 alphanumerics before ``[ARGS]`` with ids),
        one alternative per tool, up to ``max_calls`` of them back to back."""
        p = self.rule_prefix
        args = add_tool_args(builder, tools, p)
        call_id = f' {lit(CALL_ID)} [a-zA-Z0-9]{{9}}' if self.call_ids else ""
        call = alternatives(builder, f"{p}-call", [
            builder.add_rule(f"{p}-tool{i}-call",
                             f"{lit(TOOL_CALLS + spec.name)}{call_id} {lit(ARGS)} {args[spec.name]}")
            for i, spec in tools.indexed])
        return builder.add_rule(f"{p}-calls", call if tools.max_calls == 1 else f"{call}{{1,{tools.max_calls}}}")

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": TOOL_CALLS}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return MistralV11Parser(enabled=tools.mode != "none", call_ids=self.call_ids)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        call_id = CALL_ID + short_call_id_for(call_id or name) if self.call_ids else ""
        return f"{TOOL_CALLS}{name}{call_id}{ARGS}{arguments}"


@register(detect_priority=94)
class MistralV11CallIdStyle(MistralV11Style):
    """Mistral Small 3.2: the v11 format with ``[CALL_ID]`` and the model's own 9-character id before
    ``[ARGS]``; the template refuses history ids of another shape, so client ids are mapped to stable
    9-character ones, as for Nemo."""

    name = "mistral-v11-ids"
    fallback_prompt = "tools-mistral-v11-ids.jinja"
    special_tokens = (TOOL_CALLS, CALL_ID, ARGS)
    call_ids = True
    samples = Samples(
        templates=("Mistral-Small-3.2-24B-Instruct-2506.jinja",),
        calls=lambda calls: _v11_calls(calls, ids=True),
        history_call=lambda n, a: f"{TOOL_CALLS}{n}{CALL_ID}",
        fallback_call=lambda n, a: f"{TOOL_CALLS}{n}{CALL_ID}",
        call_tokens=64,  # the 9-character id comes first
        outputs=(
            SampleOutput('Sure.[TOOL_CALLS]f[CALL_ID]a1B2c3D4e[ARGS]{"a": 1}[TOOL_CALLS]g[CALL_ID]Z9y8X7w6v[ARGS]{}',
                         "Sure.", (("f", {"a": 1}), ("g", {}))),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return TOOL_CALLS in template_source and ARGS in template_source and CALL_ID in template_source

    def map_call_id(self, call_id: str) -> str:
        return short_call_id_for(call_id)
