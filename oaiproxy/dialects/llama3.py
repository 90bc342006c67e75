"""Llama 3.1 / 3.2 / 3.3: the JSON call, ``<function=NAME>{…}</function>`` and ``<|python_tag|>`` builtins.

Meta's templates teach a bare JSON object, ``{"name": …, "parameters": …}``, as
the whole answer; Meta's docs (and Functionary v3.1) also use
``<function=NAME>{…}</function>``; and the builtin tools are called after
``<|python_tag|>``: ``brave_search.call(query="…")``, ``wolfram_alpha.call(…)``,
or raw Python for the code interpreter. The builtin forms are only offered when
the request's ``tools`` contain a function of that name (``ipython``,
``python`` or ``code_interpreter`` for code, whose arguments become
``{"code": "…"}``). A turn ends with ``<|eom_id|>`` (expecting a tool result)
or ``<|eot_id|>``.

The bare JSON form can only open the answer: its lazy trigger is a
``pattern_full`` on the whole output so far, and the parser applies the same
rule (and the same whitespace bounds) so what the grammar constrained is
exactly what is read back as a call.
"""

from __future__ import annotations

import json
import re
from typing import Any

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser, StyleError
from oaiproxy.dialects.gbnf import SHORT_WS, add_tool_args, alternatives, json_call_body, lit, repeat_rule
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.prompting import one_call_per_turn
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import SampleOutput, Samples, json_call
from oaiproxy.dialects.streaming import CallObjectReader, JsonCallSection
from oaiproxy.grammar import GrammarBuilder, SchemaError

FUNCTION_OPEN = "<function="
FUNCTION_CLOSE = "</function>"
PYTHON_TAG = "<|python_tag|>"
EOM = "<|eom_id|>"
EOT = "<|eot_id|>"

#: builtin tools called as ``<|python_tag|>NAME.call(key="value", …)``
CALL_BUILTINS = ("brave_search", "wolfram_alpha")
#: builtin tools whose call is raw code after ``<|python_tag|>``
CODE_BUILTINS = ("ipython", "python", "code_interpreter")

# The bare JSON call opens the answer: up to 2 whitespace characters between its first tokens.
JSON_FORM_TRIGGER = r'[ \t\n]*(\{[ \t\n]{0,2}"name"[ \t\n]{0,2}:)[\s\S]*'
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
_IDENT = re.compile(r"[ \t\n]{0,2}([A-Za-z_][A-Za-z0-9_]{0,63})=")


def json_form_start(text: str) -> int | None | bool:
    """Where the bare JSON call's ``{`` is in ``text`` (int), False if it cannot open one, None if undecided.

    Walks :data:`JSON_FORM_TRIGGER`'s prefix by hand, because a regex cannot say
    "not yet, but maybe with more text".
    """
    n = len(text)
    i = 0
    while i < n and text[i] in " \t\n":
        i += 1
    start = i
    if i == n:
        return None
    if text[i] != "{":
        return False
    i += 1
    for literal in ('"name"', ":"):
        spaces = 0
        while i < n and text[i] in " \t\n" and spaces < 2:
            i += 1
            spaces += 1
        for ch in literal:
            if i == n:
                return None
            if text[i] != ch:
                return False
            i += 1
    return start


class Llama3Parser(JsonCallSection):
    """Content and the three Llama call forms; ``json_form`` only for Llama proper (not Functionary)."""

    def __init__(self, enabled: bool, json_form: bool, call_builtins: tuple[str, ...] = (),
                 code_tool: str | None = None, code_key: str = "code") -> None:
        super().__init__(enabled)
        self.triggers = (FUNCTION_OPEN, PYTHON_TAG)
        self._json_form = json_form
        self._call_builtins = call_builtins
        self._code_tool = code_tool
        self._code_key = code_key
        self._kw_count = 0
        if enabled and json_form:
            self._mode = "start"

    # -- modes --------------------------------------------------------------------------

    def _enter(self, trigger: str) -> None:
        self._hold(trigger)
        self._mode = "fname" if trigger == FUNCTION_OPEN else "ptag"

    def _section(self) -> None:
        getattr(self, "_mode_" + self._mode)()

    def _mode_start(self) -> None:
        where = json_form_start(self._buf)
        if where is None:
            return
        if where is False:
            self._mode = "content"
            return
        self._buf = self._buf[where:]
        self._start_json("")

    def _start_json(self, raw: str) -> None:
        self._mode = "json"
        self._begin_json(raw, CallObjectReader(self, (), args_keys=("parameters", "arguments")))

    def _mode_json(self) -> None:
        if self._scan_with_reader():
            self._mode = "after"

    def _mode_fname(self) -> None:
        end = self._buf.find(">")
        if end < 0:
            if len(self._buf) > 64 or not _NAME.match(self._buf or "x"):
                self._not_a_call()
            return
        name = self._buf[:end]
        if not _NAME.match(name):
            self._not_a_call()
            return
        self._buf = self._buf[end + 1:]
        self._begin_arguments(self.start_call(name))
        self._mode = "fargs"

    def _not_a_call(self) -> None:
        self._replay()
        self._mode = "content"

    def _mode_fargs(self) -> None:
        if self._stream_arguments():
            self._mode = "fclose"
            self._open_call = None

    def _mode_fclose(self) -> None:
        if self._expect(FUNCTION_CLOSE) is not False:
            self._mode = "after"

    def _mode_ptag(self, final: bool = False) -> None:
        """After ``<|python_tag|>``: a builtin's ``.call(`` or code; wait while undecided."""
        buf = self._buf
        undecided = False
        for name in self._call_builtins:
            opener = name + ".call("
            if buf.startswith(opener):
                self._buf = buf[len(opener):]
                self._open_call = self.start_call(name)
                self.add_arguments(self._open_call, "{")
                self._kw_count = 0
                self._mode = "kwkey"
                return
            undecided = undecided or opener.startswith(buf)
        # (a JSON call after the tag is not in the grammar: as code it is code, else text)
        if undecided and not final:
            return
        if self._code_tool is not None:
            self._open_call = self.start_call(self._code_tool)
            self.add_arguments(self._open_call, "{" + json.dumps(self._code_key) + ': "')
            self._mode = "code"
            return
        self._not_a_call()

    def _mode_code(self) -> None:
        assert self._open_call is not None
        self.add_arguments(self._open_call, json.dumps(self._buf, ensure_ascii=False)[1:-1])
        self._buf = ""

    def _mode_kwkey(self) -> None:
        buf = self._buf
        stripped = buf.lstrip(" \t\n")
        if stripped.startswith(")"):
            assert self._open_call is not None
            self.add_arguments(self._open_call, "}")
            self._buf = stripped[1:]
            self._mode = "after"
            return
        if self._kw_count and stripped.startswith(","):
            self._buf = stripped[1:]
            stripped = self._buf.lstrip(" \t\n")
            buf = self._buf
            if not stripped:
                return
        m = _IDENT.match(buf)
        if m is None:
            if "=" in buf or len(buf) > 70 or re.search(r"[^A-Za-z0-9_ \t\n,]", buf):
                self.truncated = True  # not the call syntax the grammar allows
                self._mode = "content"
            return
        assert self._open_call is not None
        self.add_arguments(self._open_call, (", " if self._kw_count else "") + json.dumps(m.group(1)) + ": ")
        self._kw_count += 1
        self._buf = buf[m.end():]
        self._begin_arguments(self._open_call)
        self._mode = "kwvalue"

    def _mode_kwvalue(self) -> None:
        if self._stream_arguments():
            self._mode = "kwkey"

    def _mode_after(self) -> None:  # pragma: no cover - handled by the base loop
        self._after_call()

    # -- end of text ----------------------------------------------------------------------

    def _end_section(self) -> None:
        mode = self._mode
        if mode == "start":
            self.emit_content(self._buf)
        elif mode == "json":
            self._abort_json()
        elif mode == "fname":
            self.truncated = True
            self._replay(with_pending=True)
        elif mode == "ptag":
            if self._code_tool is not None:
                self._mode_ptag(final=True)
                self._mode_code()
                assert self._open_call is not None
                self.add_arguments(self._open_call, '"}')
            else:
                self.truncated = bool(self._buf)
                self._replay(with_pending=True)
        elif mode == "code":
            assert self._open_call is not None
            self.add_arguments(self._open_call, '"}')
        elif mode in ("fargs", "kwkey", "kwvalue"):
            self.truncated = True
        elif mode == "fclose" and self._expect(FUNCTION_CLOSE) is None:
            self.emit_content(self._buf)
        self._buf = ""


#: raw code after ``<|python_tag|>``: any text (up to the stop word)
ANY_CODE = "[^\\x00]*"


def _code_rule(builder: GrammarBuilder, openers: list[str]) -> str:
    """Code after ``<|python_tag|>`` that does not start like a builtin call.

    The parser reads ``brave_search.call(`` as that builtin's call, so the code
    alternative must not admit it too (as code it would escape the builtin's
    argument grammar). GBNF has no lookahead: walk a trie of the openers instead.
    """
    code = builder.add_rule("llama3-code", ANY_CODE)
    if not openers:
        return code

    def node(prefix: str, depth: int) -> str:
        nexts = sorted({o[len(prefix)] for o in openers if o.startswith(prefix) and len(o) > len(prefix)})
        alts = ['""', "[^" + "".join(nexts) + f"] {code}"]
        for ch in nexts:
            child = prefix + ch
            if child in openers:
                continue  # a whole opener: not code
            alts.append(f"{lit(ch)} {node(child, depth + 1)}")
        return builder.add_rule(f"llama3-code-{depth}", " | ".join(alts))

    return node("", 0)


#: keywords a raw-code argument's schema may carry: anything else constrains the string, and raw code cannot
_PLAIN_STRING_KEYS = frozenset({"type", "description", "title", "examples", "default"})


def code_key(spec: ToolSpec) -> str | None:
    """The argument raw code becomes for a code builtin, or None when its schema cannot take raw code.

    Raw code after ``<|python_tag|>`` is free text, wrapped as ``{key: code}``: that
    is a valid call only when the parameters are an object with exactly one
    property, an unconstrained string, and nothing else required. Any other schema
    is served as an ordinary function, so its calls follow the schema.
    """
    params = spec.parameters if isinstance(spec.parameters, dict) else {}
    props = params.get("properties")
    if params.get("type", "object") != "object" or not isinstance(props, dict) or len(props) != 1:
        return None
    key, prop = next(iter(props.items()))
    if not isinstance(prop, dict) or prop.get("type") != "string" or set(prop) - _PLAIN_STRING_KEYS:
        return None
    if set(params) - {"type", "properties", "required", "additionalProperties", "description", "title"}:
        return None
    if not set(params.get("required") or []) <= {key}:
        return None
    return str(key)


def builtin_parts(tools: ToolPlan,
                  call_builtins: tuple[str, ...] = CALL_BUILTINS) -> tuple[tuple[str, ...], str | None]:
    """(call-style builtins, code builtin) among the tools in play; the code builtin only if it takes raw code."""
    names = tools.names
    calls = tuple(n for n in call_builtins if n in names)
    code = next((spec.name for _, spec in tools.indexed
                 if spec.name in CODE_BUILTINS and code_key(spec) is not None), None)
    return calls, code


def _code_key_of(tools: ToolPlan, code_tool: str | None) -> str:
    spec = next((spec for _, spec in tools.indexed if spec.name == code_tool), None)
    return (code_key(spec) if spec is not None else None) or "code"


@register(detect_priority=20)
class Llama3Style(DialectStyle):
    name = "llama3"
    rule_prefix = "llama3"
    fallback_prompt = "tools-llama3.jinja"
    stop_words = (EOM, EOT)
    special_tokens = (PYTHON_TAG, EOM, EOT)
    samples = Samples(
        templates=("meta-llama-Llama-3.2-3B-Instruct.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja",
                   "meta-llama-Llama-3.3-70B-Instruct.jinja"),
        calls=lambda calls: json_call(*calls[0], key="parameters"),
        auto_calls=lambda calls: "".join(f"{FUNCTION_OPEN}{n}>{a}{FUNCTION_CLOSE}" for n, a in calls),
        fallback_call=lambda n, a: f"{FUNCTION_OPEN}{n}>{a}{FUNCTION_CLOSE}",
        one_call_per_answer=True,
        outputs=(
            SampleOutput('\n { "name" : "f", "parameters": {"a": 1}}', "", (("f", {"a": 1}),)),
            SampleOutput('Sure.<function=f>{"a": 1}</function><function=g>{}</function>', "Sure.",
                         (("f", {"a": 1}), ("g", {}))),
            SampleOutput('Sure: {"name": "f", "parameters": {}}', 'Sure: {"name": "f", "parameters": {}}'),
        ),
    )
    #: Llama proper reads the bare JSON call; Functionary v3.1 does not
    json_form = True
    #: builtins called as ``NAME.call(…)`` after ``<|python_tag|>``
    call_builtins: tuple[str, ...] = CALL_BUILTINS

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "<|start_header_id|>" in template_source and (
            "<|start_header_id|>ipython<|end_header_id|>" in template_source or PYTHON_TAG in template_source
        ) and FUNCTION_OPEN not in template_source

    def _builtin_grammar(self, builder: GrammarBuilder, tools: ToolPlan, args: dict[str, str]) -> str | None:
        call_builtins, code_tool = builtin_parts(tools, self.call_builtins)
        alts = []
        for i, spec in tools.indexed:
            if spec.name not in call_builtins:
                continue
            params = spec.parameters or {}
            props = params.get("properties") or {}
            required = [k for k in props if k in (params.get("required") or [])]
            optional = [k for k in props if k not in required]
            if params.get("additionalProperties") not in (None, False) or params.get("type", "object") != "object":
                raise StyleError(f"tools[{i}].function.parameters: builtin {spec.name} needs plain named "
                                 "parameters", param=f"tools[{i}].function.parameters")
            parts = []
            for j, key in enumerate(required + optional):
                try:
                    value = builder.add_schema(props[key], f"llama3-tool{i}-kw{j}", objects=spec.objects,
                                               strict=spec.strict)
                except SchemaError as e:
                    where = f"tools[{i}].function.parameters"
                    raise StyleError(f"{where}: {e}", param=where) from e
                parts.append((key, value, key in required))
            body = []
            first = True
            for key, value, req in parts:
                piece = ("" if first else '", " ') + f"{lit(key + '=')} {value}"
                body.append(piece if req else f"( {piece} )?")
                first = first and not req
            alts.append(f"{lit(spec.name + '.call(')} {' '.join(body)} \")\"")
        if code_tool is not None:
            alts.append(_code_rule(builder, [name + ".call(" for name in call_builtins]))
        if not alts:
            return None
        return builder.add_rule("llama3-python-call", f"{lit(PYTHON_TAG)} ( {' | '.join(alts)} )")

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """The bare JSON call (``required``), ``<function=…>`` tags (``auto`` too) and ``<|python_tag|>`` builtins."""
        ws = builder.add_rule("llama3-ws", SHORT_WS)
        args = add_tool_args(builder, tools, "llama3")
        call_builtins, code_tool = builtin_parts(tools, self.call_builtins)
        json_alts, fn_alts = [], []
        for i, spec in tools.indexed:
            if spec.name in call_builtins or spec.name == code_tool:
                continue
            if self.json_form:
                json_alts.append(builder.add_rule(
                    f"llama3-tool{i}-json", json_call_body(spec.name, args[spec.name], ws, "parameters")))
            fn_alts.append(builder.add_rule(
                f"llama3-tool{i}-function", f"{lit(FUNCTION_OPEN + spec.name + '>')} {args[spec.name]} "
                                            f"{lit(FUNCTION_CLOSE)}"))
        python = self._builtin_grammar(builder, tools, args)
        forms = []
        if fn_alts:
            function_call = alternatives(builder, "llama3-function-call", fn_alts)
            sep = builder.add_rule("llama3-sep", SHORT_WS)
            functions = builder.add_rule("llama3-function-calls", repeat_rule(function_call, sep, tools.max_calls))
            if json_alts:
                # what the template teaches when a call is required; tags too when the model picks them itself
                forms.append(alternatives(builder, "llama3-json-call", json_alts))
                if tools.mode == "auto":
                    forms.append(functions)
            else:
                forms.append(functions)
        if python:
            forms.append(python)
        return builder.add_rule("llama3-calls", " | ".join(forms))

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        call_builtins, code_tool = builtin_parts(tools, self.call_builtins)
        others = [n for n in tools.names if n not in call_builtins and n != code_tool]
        triggers = []
        if others:
            triggers.append({"type": "word", "value": FUNCTION_OPEN})
            if self.json_form:
                triggers.append({"type": "pattern_full", "value": JSON_FORM_TRIGGER})
        if call_builtins or code_tool:
            triggers.append({"type": "word", "value": PYTHON_TAG})
        return triggers

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        call_builtins, code_tool = builtin_parts(tools, self.call_builtins)
        return Llama3Parser(enabled=tools.mode != "none", json_form=self.json_form,
                            call_builtins=call_builtins, code_tool=code_tool, code_key=_code_key_of(tools, code_tool))

    def render_extra(self, tools: ToolPlan) -> dict[str, Any]:
        call_builtins, code_tool = builtin_parts(tools, self.call_builtins)
        builtins = list(call_builtins) + (["code_interpreter"] if code_tool else [])
        return {"builtin_tools": builtins} if builtins else {}

    def adjust_history(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Llama's templates refuse more than one call per assistant turn: give each call its own turn.
        return one_call_per_turn(messages)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return f"{FUNCTION_OPEN}{name}>{arguments}{FUNCTION_CLOSE}"
