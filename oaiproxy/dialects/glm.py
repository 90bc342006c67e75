"""GLM 4.5–4.7 / Ling 3 / Laguna / Spark 2.5 / Hunyuan 3: ``<tool_call>NAME`` with ``<arg_key>``/``<arg_value>`` pairs.

The format GLM-4.5 introduced: each call is a ``<tool_call>`` block holding
the function name, then one key element and one value element per argument::

    <tool_call>get_weather
    <arg_key>city</arg_key>
    <arg_value>Paris</arg_value>
    </tool_call>

The templates differ only in the newlines between the parts (GLM-4.6 and Ling
write one after the name and between the elements, GLM-4.7-Flash, Spark 2.5 and
Laguna-S none, Laguna-XS after each element), so the grammar allows at most one
newline at each of those places (two before the closing tag, which Ling writes
after the name of a call without arguments) and the parser skips whitespace there.
Tencent's Hunyuan 3 (Hy3) writes the same structure in its own tags
(``<tool_call:opensource>``, ``<arg_key:opensource>`` …), puts
``<tool_sep:opensource>`` after the name and wraps the calls of one answer in
``<tool_calls:opensource>`` … ``</tool_calls:opensource>``: one registered style
per spelling, one grammar and one parser for both (:class:`Tags`).

Values are written as the templates write them (``oaiproxy.dialects.xml_values``):
a string raw, anything else as JSON; the raw text of a plain string cannot
contain ``</arg_value>``, which ends it. A JSON value is read as JSON, so a
``</arg_value>`` inside one of its strings does not end it. Parameters come in
the order the schema declares them, the required ones always, the optional
ones or not. The lazy grammar's trigger is the opening tag (``<tool_call>``;
Hy3's ``<tool_calls:opensource>``); several calls follow each other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects._jsonscan import JsonScanError, JsonScanner
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import alternatives, lit, repeat_rule
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.streaming import JsonCallSection, partial_word_at_end
from oaiproxy.dialects.xml_values import json_string_piece, object_parameters, raw_string_keys, render_value, value_rule
from oaiproxy.grammar import GrammarBuilder

#: at most one newline between two parts of a call (the templates write one or none)
NL = '"\\n"?'
#: before the closing tag: Ling writes two after the name of a call without arguments
NL_CLOSE = '"\\n"{0,2}'
#: the characters of a function name (the API's own rule: ``^[a-zA-Z0-9_.-]{1,64}$``)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_NAME_MAX = 64
_KEY = re.compile(r"[^<>\n]{1,128}\Z")


@dataclass(frozen=True)
class Tags:
    """How one model family spells the format's tags."""

    call_open: str = "<tool_call>"
    call_close: str = "</tool_call>"
    key_open: str = "<arg_key>"
    key_close: str = "</arg_key>"
    value_open: str = "<arg_value>"
    value_close: str = "</arg_value>"
    #: written between the name and the first argument (Hy3's ``<tool_sep>``); empty: nothing
    name_end: str = ""
    #: the tags around all the calls of one answer (Hy3's ``<tool_calls>``); empty: none
    section_open: str = ""
    section_close: str = ""

    @property
    def opening(self) -> str:
        """The text an answer's calls start with: the lazy grammar's trigger."""
        return self.section_open or self.call_open

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(t for t in (self.section_open, self.section_close, self.call_open, self.call_close,
                                 self.name_end, self.key_open, self.key_close, self.value_open, self.value_close)
                     if t)


GLM = Tags()


def _hy(tag: str) -> str:
    return tag[:-1] + ":opensource>"


HY3 = Tags(*(_hy(t) for t in (GLM.call_open, GLM.call_close, GLM.key_open, GLM.key_close, GLM.value_open,
                              GLM.value_close, "<tool_sep>", "<tool_calls>", "</tool_calls>")))


def call_text(tags: Tags, name: str, arguments: str) -> str:
    """One whole call for ``name`` and its arguments (JSON text), as GLM-4.6 (or Hy3) lays it out."""
    try:
        args = json.loads(arguments)
    except ValueError:
        args = {}
    params = "".join(f"{tags.key_open}{k}{tags.key_close}\n{tags.value_open}{render_value(v)}{tags.value_close}\n"
                     for k, v in (args.items() if isinstance(args, dict) else ()))
    return f"{tags.call_open}{name}{tags.name_end}\n{params}{tags.call_close}"


def calls_text(tags: Tags, calls: Sequence[Call]) -> str:
    """The calls of one answer (in Hy3's section when the tags have one)."""
    body = "\n".join(call_text(tags, n, a) for n, a in calls)
    return f"{tags.section_open}\n{body}\n{tags.section_close}" if tags.section_open else body


class GlmParser(JsonCallSection):
    """Content, then calls: a name, then ``<arg_key>``/``<arg_value>`` pairs.

    A call is announced when its name is complete. Its arguments stream as a
    JSON object built from the pairs: a parameter the tool declares as a string
    streams as its raw text is written (held back only where it could be the
    start of ``</arg_value>``); any other value is read as JSON and sent whole
    once it ends, or, when it is not JSON (a parameter the grammar did not
    write), read as text up to ``</arg_value>``.
    """

    def __init__(self, enabled: bool, raw_keys: Mapping[str, frozenset[str]], tags: Tags = GLM) -> None:
        super().__init__(enabled)
        self.triggers = (tags.opening,)
        self._tags = tags
        self._raw_keys = raw_keys
        self._keys = 0
        self._key = ""
        self._scanner = JsonScanner()
        #: the JSON value read so far
        self._value = ""

    # -- the core's hooks -------------------------------------------------------------------

    def _enter(self, trigger: str) -> None:
        self._pending = trigger
        self._mode = "section" if trigger == self._tags.section_open else "name"

    def _section(self) -> None:
        getattr(self, "_step_" + self._mode)()

    def _end_section(self) -> None:
        mode = self._mode
        if mode == "section":
            self.emit_content(self._pending + self._buf)
        elif mode == "name":
            if self._buf and all(c in _NAME_CHARS for c in self._buf):
                self.truncated = True  # cut inside the name: a call, never whole
                self.start_call(self._buf)
            else:
                self.emit_content(self._pending + self._buf)
        elif mode == "between":
            if self._expect(self._tags.section_close) is None:
                self.emit_content(self._buf)
        elif self._call is not None:
            self.truncated = True  # the call keeps the parameters it completed, in an object never closed
        self._buf = ""

    # -- the steps, one per mode ------------------------------------------------------------

    def _step_section(self) -> None:
        """After Hy3's ``<tool_calls>``: the first call's opening."""
        before = self._buf
        done = self._expect(self._tags.call_open)
        if done is None:
            self._not_a_call()
        elif done:
            self._pending += before[: len(before) - len(self._buf)]
            self._mode = "name"

    def _step_name(self) -> None:
        end = next((i for i, c in enumerate(self._buf) if c not in _NAME_CHARS), -1)
        if end < 0:
            if len(self._buf) > _NAME_MAX:
                self._not_a_call()
            return
        if end == 0 or end > _NAME_MAX or self._buf[end] not in "<\n":
            self._not_a_call()  # the text stays, read as content (it may hold a trigger)
            return
        self._call = self.start_call(self._buf[:end])
        self._buf = self._buf[end:]
        self._pending = ""
        self._keys = 0
        self._mode = "sep" if self._tags.name_end else "args"

    def _step_sep(self) -> None:
        done = self._expect(self._tags.name_end)
        if done is None:
            self._broken()
        elif done:
            self._mode = "args"

    def _step_args(self) -> None:
        """Between the pairs: another key, or the end of the call."""
        tags = self._tags
        stripped = self._buf.lstrip()
        if stripped.startswith(tags.key_open):
            self._buf = stripped[len(tags.key_open):]
            self._mode = "key"
        elif stripped.startswith(tags.call_close):
            self._buf = stripped[len(tags.call_close):]
            call = self._call
            assert call is not None
            self.add_arguments(call, "}" if self._keys else "{}")
            self._call = None
            self._mode = "between" if tags.section_open else "after"
        elif stripped and not tags.key_open.startswith(stripped) and not tags.call_close.startswith(stripped):
            self._broken()

    def _step_key(self) -> None:
        close = self._tags.key_close
        end = self._buf.find(close)
        if end < 0:
            lt = self._buf.find("<")
            if len(self._buf) > 128 + len(close) or "\n" in self._buf or (lt >= 0 and not close.startswith(
                    self._buf[lt:])):
                self._broken()
            return
        key = self._buf[:end]
        if not _KEY.match(key):
            self._broken()
            return
        self._key = key
        self._buf = self._buf[end + len(self._tags.key_close):]
        self._mode = "vopen"

    def _step_vopen(self) -> None:
        done = self._expect(self._tags.value_open)
        if done is None:
            self._broken()
        elif done:
            call = self._call
            assert call is not None
            self.add_arguments(call, ("{" if not self._keys else ", ") + json.dumps(self._key, ensure_ascii=False)
                               + ": ")
            self._keys += 1
            if self._key in self._raw_keys.get(call.name, frozenset()):
                self.add_arguments(call, '"')
                self._mode = "raw"
            else:
                self._scanner = JsonScanner()
                self._value = ""
                self._mode = "json"

    def _step_raw(self) -> None:
        """A raw string: streamed, up to ``</arg_value>`` (a tail that may begin it is held back)."""
        close = self._tags.value_close
        end = self._buf.find(close)
        call = self._call
        assert call is not None
        if end >= 0:
            self.add_arguments(call, json_string_piece(self._buf[:end]) + '"')
            self._buf = self._buf[end + len(close):]
            self._mode = "args"
            return
        keep = partial_word_at_end(self._buf, (close,))
        self.add_arguments(call, json_string_piece(self._buf[: len(self._buf) - keep]))
        self._buf = self._buf[len(self._buf) - keep:]

    def _step_json(self) -> None:
        """A JSON value, scanned until it ends (a ``</arg_value>`` inside one of its strings is its text)."""
        scanner = self._scanner
        buf = self._buf
        i = 0
        try:
            while i < len(buf) and not scanner.done:
                scanner.feed_char(buf[i])
                if scanner.rejected:  # the character after a number: not the value's
                    break
                i += 1
        except JsonScanError:
            self._buf = self._value + buf  # not JSON: the value is text, up to the first </arg_value>
            self._mode = "text"
            return
        self._value += buf[:i]
        self._buf = buf[i:]
        if scanner.done:
            self._mode = "jsonend"

    def _step_jsonend(self) -> None:
        done = self._expect(self._tags.value_close)
        if done is None:  # something after the JSON value: the whole value is text
            self._buf = self._value + self._buf
            self._mode = "text"
        elif done:
            call = self._call
            assert call is not None
            self.add_arguments(call, self._value.strip())
            self._mode = "args"

    def _step_text(self) -> None:
        close = self._tags.value_close
        end = self._buf.find(close)
        if end < 0:
            return
        call = self._call
        assert call is not None
        self.add_arguments(call, json.dumps(self._buf[:end], ensure_ascii=False))
        self._buf = self._buf[end + len(close):]
        self._mode = "args"

    def _step_between(self) -> None:
        """Hy3, after a call: the next one, or the end of the section."""
        tags = self._tags
        stripped = self._buf.lstrip()
        if stripped.startswith(tags.call_open):
            self._buf = stripped[len(tags.call_open):]
            self._pending = tags.call_open
            self._mode = "name"
        elif stripped.startswith(tags.section_close):
            self._buf = stripped[len(tags.section_close):]
            self._mode = "after"
        elif stripped and not tags.call_open.startswith(stripped) and not tags.section_close.startswith(stripped):
            self._mode = "after"  # the section was never closed: what follows is the core's



class _GlmFormat(DialectStyle):
    """The grammar and the rest of the dialect, for one :class:`Tags` spelling."""

    tags: Tags = GLM

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """The calls, one alternative per tool, up to ``max_calls`` of them (in Hy3's section)."""
        p, tags = self.rule_prefix, self.tags
        call = alternatives(builder, f"{p}-call", [self._tool_rule(builder, i, spec) for i, spec in tools.indexed])
        sep = builder.add_rule(f"{p}-nl", NL)
        calls = f"{sep} {repeat_rule(call, sep, tools.max_calls)}"
        if tags.section_open:
            calls = f"{lit(tags.section_open)} {calls} {sep} {lit(tags.section_close)}"
        return builder.add_rule(f"{p}-calls", calls)

    def _tool_rule(self, builder: GrammarBuilder, i: int, spec: ToolSpec) -> str:
        p, tags = self.rule_prefix, self.tags
        props, required = object_parameters(spec, i, self.name)
        parts = [lit(tags.call_open + spec.name + tags.name_end)]
        for j, (key, prop) in enumerate(props.items()):
            value = value_rule(builder, prop, f"{p}-tool{i}-p{j}", spec, i, key, end=tags.value_close,
                               dialect=self.name, text_prefix=p)
            pair = builder.add_rule(f"{p}-tool{i}-param{j}",
                                    f"{NL} {lit(tags.key_open + key + tags.key_close)} {NL} "
                                    f"{lit(tags.value_open)} {value} {lit(tags.value_close)}")
            parts.append(pair if key in required else f"{pair}?")
        parts += [NL_CLOSE, lit(tags.call_close)]
        return builder.add_rule(f"{p}-tool{i}-call", " ".join(parts))

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": self.tags.opening}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        raw = {spec.name: raw_string_keys(spec) for _, spec in tools.indexed}
        return GlmParser(enabled=tools.mode != "none", raw_keys=raw, tags=self.tags)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return calls_text(self.tags, [(name, arguments)])


def _history_fragment(tags: Tags) -> Callable[[str, str], str]:
    """The samples' history fragment: the last argument's value element, which every template writes alike."""

    def fragment(name: str, arguments: str) -> str:
        args = json.loads(arguments)
        value = render_value(list(args.values())[-1]) if isinstance(args, dict) and args else ""
        return f"{tags.value_open}{value}{tags.value_close}"

    return fragment


@register(detect_priority=60)
class GlmStyle(_GlmFormat):
    name = "glm"
    rule_prefix = "glm"
    fallback_prompt = "tools-glm.jinja"
    special_tokens = GLM.all
    tags = GLM
    samples = Samples(
        templates=("GLM-4.6.jinja", "GLM-4.7-Flash.jinja", "Spark2.5.jinja", "inclusionai-ling-3.0-flash.jinja",
                   "poolside-Laguna-S-2.1.jinja", "poolside-Laguna-XS-2.1.jinja", "poolside-Laguna-XS.2.jinja"),
        calls=lambda calls: calls_text(GLM, calls),
        history_call=_history_fragment(GLM),
        fallback_call=lambda n, a: call_text(GLM, n, a),
        call_tokens=96,  # a 16-character city and the unit: about 70 tokens of the default model
        argument_key=lambda key: f"{GLM.key_open}{key}{GLM.key_close}",
        outputs=(
            SampleOutput("I will check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>"
                         "\n</tool_call>", "I will check.\n", (("get_weather", {"city": "Paris"}),)),
            SampleOutput("<tool_call>f<arg_key>a</arg_key><arg_value>x < y</arg_value><arg_key>b</arg_key>"
                         "<arg_value>2</arg_value></tool_call><tool_call>g</tool_call>", "",
                         (("f", {"a": "x < y", "b": 2}), ("g", {}))),
            SampleOutput('<tool_call>f\n<arg_key>t</arg_key>\n<arg_value>{"s": "</arg_value>"}</arg_value>\n'
                         "</tool_call>", "", (("f", {"t": {"s": "</arg_value>"}}),)),
            SampleOutput("<tool_call> is followed by no function at all",
                         "<tool_call> is followed by no function at all"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return all(marker in template_source for marker in (GLM.call_open, GLM.key_open, GLM.value_open))


@register(detect_priority=61)
class GlmHy3Style(_GlmFormat):
    name = "glm-hy3"
    rule_prefix = "glmhy3"
    fallback_prompt = "tools-glm-hy3.jinja"
    special_tokens = HY3.all
    tags = HY3
    samples = Samples(
        templates=("tencent-Hy3.jinja",),
        calls=lambda calls: calls_text(HY3, calls),
        history_call=_history_fragment(HY3),
        fallback_call=lambda n, a: calls_text(HY3, [(n, a)]),
        call_tokens=144,  # the :opensource tags are 6-8 tokens each: about 110 for a 16-character city
        argument_key=lambda key: f"{HY3.key_open}{key}{HY3.key_close}",
        outputs=(
            SampleOutput("I will check.\n<tool_calls:opensource>\n<tool_call:opensource>get_weather"
                         "<tool_sep:opensource>\n<arg_key:opensource>city</arg_key:opensource>\n"
                         "<arg_value:opensource>Paris</arg_value:opensource>\n</tool_call:opensource>\n"
                         "</tool_calls:opensource>", "I will check.\n", (("get_weather", {"city": "Paris"}),)),
            SampleOutput("<tool_calls:opensource><tool_call:opensource>f<tool_sep:opensource>"
                         "<arg_key:opensource>a</arg_key:opensource><arg_value:opensource>[1, 2]"
                         "</arg_value:opensource></tool_call:opensource>\n<tool_call:opensource>g"
                         "<tool_sep:opensource></tool_call:opensource></tool_calls:opensource>", "",
                         (("f", {"a": [1, 2]}), ("g", {}))),
            SampleOutput("<tool_calls:opensource> and no call", "<tool_calls:opensource> and no call"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        # the template spells its tags as '<arg_key{}>'.format(HYTK) with HYTK = ':opensource'
        return "<arg_key{}>" in template_source and "':opensource'" in template_source


__all__ = ["GLM", "HY3", "GlmHy3Style", "GlmParser", "GlmStyle", "Tags", "call_text", "calls_text"]
