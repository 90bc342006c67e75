"""The generic scheme, for every model without a tool-calling dialect of its own (base models included).

The answer is one JSON object, constrained from the first token:

    {"thought_about_next_step_only": "…", "next_step": {"tool_calls": [{"name": …, "arguments": {…}}]}}
    {"thought_about_next_step_only": "…", "next_step": {"result": …}}

A short, bounded thought first gives a small model a moment to decide before
it commits, without room to ramble; ``next_step`` is where ``tool_choice``
bites (``auto``: calls or result; ``required``: calls only; a named function:
only that one). ``result`` is the response_format schema, a string for plain
text. Past calls and answers in the history are shown in the same envelope,
so the model continues a pattern it has seen. Without tools the answer is free
text, or JSON following the response_format schema.
"""

from __future__ import annotations

import json
import re
from typing import Any

from oaiproxy.conversation.checks import checked_tools_key
from oaiproxy.conversation.model import Conversation
from oaiproxy.conversation.tools import ToolPlan, plan_tools
from oaiproxy.dialects._jsonscan import Path, StringDecoder
from oaiproxy.dialects.base import GenerationPlan, Style
from oaiproxy.dialects.gbnf import add_response_schema, add_tool_args, alternatives, json_call_body, lit
from oaiproxy.dialects.prompting import (
    PastCall,
    history_as_text,
    merge_system_into_user,
    render,
    render_prompt_text,
    response_schema,
    schema_note,
    template_variables,
    with_system_text,
)
from oaiproxy.dialects.reasoning import detect_reasoning
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import SampleOutput, Samples, json_call
from oaiproxy.dialects.streaming import CallObjectReader, JsonCallSection
from oaiproxy.dialects.typescript import ts_signature
from oaiproxy.grammar import GrammarBuilder
from oaiproxy.templating.text_memo import TOOL_SECTIONS

THOUGHT = "thought_about_next_step_only"
STEP = "next_step"
CALLS_PATH: Path = (STEP, "tool_calls")
RESULT_PATH: Path = (STEP, "result")


def envelope(thought: str, step: dict[str, Any]) -> str:
    """The envelope as the model is asked to write it (json.dumps spacing)."""
    return json.dumps({THOUGHT: thought, STEP: step}, ensure_ascii=False)


class PlainParser(JsonCallSection):
    """Everything is content: no tools in play."""

    def __init__(self) -> None:
        super().__init__(enabled=False)

    def _end_section(self) -> None:  # pragma: no cover - never leaves content mode
        pass


class GenericParser(JsonCallSection):
    """Reads the envelope as it streams: calls from ``tool_calls``, content from ``result``.

    The thought is kept on :attr:`thought` (for logs), not shown as content. A
    string result becomes its decoded text, any other result its JSON text.
    """

    def __init__(self) -> None:
        super().__init__(enabled=True)
        self._mode = "envelope"
        self._begin_json("", None)
        self._readers: dict[int, CallObjectReader] = {}
        self._thought_raw: list[str] = []
        self._result_string: bool | None = None
        self._decoder = StringDecoder()

    @property
    def thought(self) -> str:
        raw = "".join(self._thought_raw)
        try:
            return str(json.loads(raw))
        except ValueError:
            return raw.strip('"')

    def _on_char(self, ch: str, path: Path | None, completed: list[Path]) -> None:
        if path is not None:
            if path[:1] == (THOUGHT,):
                self._thought_raw.append(ch)
            elif path[:2] == CALLS_PATH and len(path) >= 3 and isinstance(path[2], int):
                index = path[2]
                if index not in self._readers:
                    self._readers[index] = CallObjectReader(self, CALLS_PATH + (index,))
                    self._follow(self._readers[index])
            elif path[:2] == RESULT_PATH:
                self._result_char(ch, path, completed)
        for reader in self._readers.values():
            if not reader.done:
                reader.on_char(ch, path, completed)

    def _result_char(self, ch: str, path: Path, completed: list[Path]) -> None:
        if self._result_string is None:
            self._result_string = ch == '"' and path == RESULT_PATH
            if self._result_string:
                return  # the opening quote
        if self._result_string:
            if RESULT_PATH in completed:  # the closing quote
                self.emit_content(self._decoder.finish())
            else:
                self.emit_content(self._decoder.feed(ch))
        else:
            self.emit_content(ch)

    def _section(self) -> None:
        if self._mode == "envelope":
            if self._scan_json(self._on_char):
                self._mode = "tail"
        elif self._mode == "tail":  # whitespace after the object is nothing; anything else is content
            if self._buf.strip():
                self._mode = "content"
            else:
                self._buf = ""

    def _end_section(self) -> None:
        if self._mode == "envelope":
            if self._readers or not self._json_begun:  # a call begun is cut; an envelope cut before any call is not
                self._abort_calls(self._readers.values())
            if self._json_begun and self._result_string:
                self.emit_content(self._decoder.finish())
        self._buf = ""


@register(fallback=True)
class GenericStyle(Style):
    """oaiproxy's own JSON envelope; see the module docstring."""

    name = "generic"
    #: how tools are described: "typescript" (compact) or "json_schema"
    tools_format = "typescript"
    #: upper bound on the thought, in characters: room to decide, not to ramble
    thought_max_length = 100
    #: ``tool_choice: "none"`` keeps the ``auto`` prompt (tools included) and forbids the call in the grammar
    none_keeps_tools = True
    #: at most this many calls per answer: a base model otherwise repeats one call until n_predict runs out
    max_parallel_calls = 4
    samples = Samples(
        templates=("default", "google-gemma-2-2b-it.jinja", "microsoft-Phi-3.5-mini-instruct.jinja"),
        calls=lambda calls: envelope("I will look it up.", {"tool_calls": [
            {"name": n, "arguments": json.loads(a)} for n, a in calls]}),
        history_call=lambda n, a: f'"next_step": {{"tool_calls": [{json_call(n, a)}]}}',
        lazy_auto=False,
        call_tokens=96,  # the bounded thought comes first
        # templates that never write a past call, so no native format can be read from them
        also_detected=("HuggingFaceTB-SmolLM3-3B.jinja", "LFM2-8B-A1B.jinja",
                       "ibm-granite-granite-3.3-2B-Instruct.jinja"),
        outputs=(
            SampleOutput(envelope("Answer now.", {"result": "It is sunny."}), "It is sunny."),
            SampleOutput(envelope("Two lookups.", {"tool_calls": [{"name": "f", "arguments": {"a": "b"}},
                                                                  {"name": "g", "arguments": {}}]}), "",
                         (("f", {"a": "b"}), ("g", {}))),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return False  # the fallback: chosen when no other dialect claims the template

    def _shown(self, conversation: Conversation) -> tuple[ToolPlan, ToolPlan]:
        """The tools in play, and the tools the prompt shows: ``none`` with tools offered keeps the tool
        section of ``auto`` (the prompt shares its prefix with the turns around it, so llama-server's cache
        serves it) and leaves only the answer in the grammar."""
        tools = plan_tools(conversation)
        shown = tools if tools.mode != "none" or not conversation.tools else \
            ToolPlan((), tuple(conversation.tools), "none", tools.parallel)
        return tools, shown

    def prompt_plan(self, conversation: Conversation) -> GenerationPlan:
        """The prompt and a fresh parser; the grammar and reasoning :meth:`plan` adds read the tools, the
        response schema and the template, never the messages (so the plan cache keeps them)."""
        _, shown = self._shown(conversation)
        uses_envelope = bool(shown.prompt_tools)
        prompt = self._prompt(conversation, shown, response_schema(conversation), uses_envelope)
        return GenerationPlan(prompt=prompt, parser=GenericParser() if uses_envelope else PlainParser())

    def plan(self, conversation: Conversation) -> GenerationPlan:
        tools, shown = self._shown(conversation)
        schema = response_schema(conversation)
        builder = GrammarBuilder()
        plan = self.prompt_plan(conversation)
        # a thinking template's model reasons first (the engine's reasoning phase), then writes the envelope
        plan.reasoning = detect_reasoning(self.template.source)
        if not shown.prompt_tools:
            if schema is not None:
                plan.grammar = builder.to_gbnf(add_response_schema(builder, schema, "generic-response"))
            return plan
        plan.grammar = builder.to_gbnf(self._envelope_grammar(builder, tools, schema))
        return plan

    def _envelope_grammar(self, builder: GrammarBuilder, tools: ToolPlan, schema: dict[str, Any] | None) -> str:
        """The envelope: a bounded thought, then ``next_step``: calls (``tool_calls``) or the answer (``result``).

        ``required`` leaves only the calls, ``none`` only the answer; ``result`` is the response_format schema,
        a string for free text.
        """
        ws = builder.add_rule("generic-ws", '" "?')

        def key(name: str) -> str:  # "name" ws ":" ws
            return f'{lit(json.dumps(name))} {ws} ":" {ws}'

        # ``none`` has nothing to decide: its thought is empty, so the answer starts within a few tokens
        # (a thought of up to 100 characters took a small max_tokens' whole budget, and the answer was empty)
        thought = builder.add_rule("generic-thought-none", '"\\"\\""') if tools.mode == "none" else \
            builder.add_schema({"type": "string", "maxLength": self.thought_max_length}, "generic-thought-text")
        steps = []
        if tools.indexed:  # ``none``: the answer only
            args = add_tool_args(builder, tools, "generic")
            call = alternatives(builder, "generic-call", [
                builder.add_rule(f"generic-tool{i}-call", json_call_body(spec.name, args[spec.name], ws))
                for i, spec in tools.indexed])
            more = min(tools.max_calls, self.max_parallel_calls) - 1
            calls = builder.add_rule("generic-tool-calls",
                                     call + (f' ( "," {ws} {call} ){{0,{more}}}' if more else ""))
            steps.append(builder.add_rule("generic-calls-step",
                                          f'"{{" {ws} {key("tool_calls")} "[" {ws} {calls} {ws} "]" {ws} "}}"'))
        if tools.mode != "required":
            result = add_response_schema(builder, schema if schema is not None else {"type": "string"},
                                         "generic-response")
            steps.append(builder.add_rule("generic-result-step", f'"{{" {ws} {key("result")} {result} {ws} "}}"'))
        step = alternatives(builder, "generic-step", steps)
        return builder.add_rule("generic-root", f'"{{" {ws} {key(THOUGHT)} {thought} {ws} "," {ws} {key(STEP)} '
                                                f'{step} {ws} "}}"')

    # -- prompt ---------------------------------------------------------------------------

    def _prompt(self, conversation: Conversation, tools: ToolPlan, schema: dict[str, Any] | None,
                uses_envelope: bool) -> str:
        template = self.template
        messages = self._history(conversation.messages, uses_envelope, schema is not None)
        notes = []
        if uses_envelope:
            notes.append(TOOL_SECTIONS.get(self._section_key(tools, schema), lambda: render_prompt_text(
                "tools-generic.jinja",
                tools=[{"name": s.name, "description": s.description, "parameters": s.parameters,
                        "declaration": ts_signature(s)} for s in tools.prompt_tools],
                # ``none`` is told what ``auto`` is: the same text, the grammar alone forbids the call
                tools_format=self.tools_format, mode="required" if tools.mode == "required" else "auto",
                parallel=tools.parallel,
                thought_max=self.thought_max_length, result_schema=schema, result_is_text=schema is None,
                examples=self._examples(tools, schema),
            )))
        elif schema is not None:
            notes.append(schema_note(schema))
        supports_system = template.supports_system_role
        if notes:
            messages = with_system_text(messages, "\n\n".join(notes), supports_system)
        elif not supports_system:
            messages = merge_system_into_user(messages)
        variables = template_variables(conversation, detect_reasoning(template.source) is not None, template.source)
        return render(template, _alternate(messages), None, **variables)

    def _section_key(self, tools: ToolPlan, schema: dict[str, Any] | None) -> tuple[Any, ...] | None:
        """What the tool section's text is a function of (None: not remembered): the checked tools' JSON,
        the mode and parallelism it states, the response schema, and this class (its format, its bound)."""
        keys = checked_tools_key(tools.prompt_tools)
        if keys is None:
            return None
        try:
            schema_text = json.dumps(schema)
        except (TypeError, ValueError):
            return None
        return ("tools-generic.jinja", type(self).__module__, type(self).__qualname__, self.tools_format,
                self.thought_max_length, tools.mode == "required", tools.parallel, schema_text, keys)

    def _examples(self, tools: ToolPlan, schema: dict[str, Any] | None) -> list[dict[str, str]]:
        """The example exchanges the prompt shows: a call and, unless a call is required, an answer first.

        The call is a fixed request to a made-up tool, its argument taken from the request's words: an
        example call of the request's own tool had its values ("..." or any literal) copied into every
        call. The answer comes first and the call last: a small model follows the example nearest to its
        turn, and with the answer last it never called (docs/tool-calling-quality.md).
        """
        call = {"when": "For example, with a tool get_population(args: { city: string }):",
                "user": "How many people live in Lima?",
                "reply": "Assistant: " + envelope("get_population fits: the city is Lima.", {"tool_calls": [
                    {"name": "get_population", "arguments": {"city": "Lima"}}]})}
        if tools.mode == "required":
            return [call]
        answer = {"when": "When no tool fits (small talk, or a question you can answer yourself):",
                  "user": "Hello, how are you?",
                  "reply": "Assistant: " + envelope("No tool fits: I answer myself.", {
                      "result": "Hello! How can I help you?" if schema is None else example_values(schema)})}
        return [answer, call]

    def _history(self, messages: list[dict[str, Any]], uses_envelope: bool, json_result: bool) -> list[dict[str, Any]]:
        """Calls and answers as envelopes, tool results as user turns: any template can render that."""

        def write_calls(content: str, calls: list[PastCall]) -> str:
            return envelope(content, {"tool_calls": [{"name": c.name, "arguments": _json_or_text(c.arguments)}
                                                     for c in calls]})

        def write_answer(content: str) -> str:
            return envelope("", {"result": _json_or_text(content) if json_result else content})

        return history_as_text(messages, write_calls, write_answer if uses_envelope else None)


def _json_or_text(text: str) -> Any:
    """The JSON value ``text`` holds, or the text itself when it is not JSON (shown as the client sent it)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def example_values(schema: Any, depth: int = 0) -> Any:
    """Concrete example arguments of the right types for ``schema``: its own ``examples``, ``default``,
    ``const`` or ``enum`` values first, then a value the description suggests ("e.g. Paris"), then a
    plausible literal of the type. Required keys only, in the schema's order; never raises."""
    if not isinstance(schema, dict) or depth > 32:
        return {}
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_values(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if isinstance(k, str) and k != "null"), "null")
    if not isinstance(kind, str):
        kind = None
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        names = [k for k in required if isinstance(k, str)] if isinstance(required, list) else []
        return {k: example_values(props[k], depth + 1) for k in names if k in props}
    if kind == "array":
        items = schema.get("items")
        count = schema.get("minItems")
        count = count if isinstance(count, int) and 0 < count <= 3 else 1
        return [example_values(items, depth + 1) for _ in range(count)] if isinstance(items, dict) else []
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        value: float = 1
        if isinstance(low, (int, float)) and not isinstance(low, bool):
            value = max(value, low)
        if isinstance(high, (int, float)) and not isinstance(high, bool):
            value = min(value, high)
        return int(value) if kind == "integer" and float(value).is_integer() else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if isinstance(schema.get("format"), str) and schema["format"] in _FORMAT_EXAMPLES:
        return _FORMAT_EXAMPLES[schema["format"]]
    hint = _description_example(schema.get("description"))
    return hint if hint is not None else "text"


def _description_example(description: Any) -> str | None:
    """The value a description suggests: "City name, e.g. Paris" -> "Paris"; "YYYY-MM-DD" -> a date."""
    if not isinstance(description, str):
        return None
    match = re.search(r"(?:\be\.g\.|\bfor example|\bsuch as)[,:]?\s+(.+?)\s*(?:;|\.\s|\.?$)", description, re.I)
    if match:
        return match.group(1).strip().strip("'\"`")
    for layout, value in (("YYYY-MM-DD", "2024-01-31"), ("HH:MM", "09:00")):
        if layout in description:
            return value
    return None


#: the name the strict-mode tests know (a valid value for each enforced format)
example_arguments = example_values

_FORMAT_EXAMPLES = {
    "email": "name@example.com", "date": "2024-01-31", "date-time": "2024-01-31T09:00:00Z", "time": "09:00:00Z",
    "uuid": "123e4567-e89b-12d3-a456-426614174000", "ipv4": "192.0.2.1", "hostname": "example.com",
    "uri": "https://example.com/",
}


@register()
class GenericJsonSchemaStyle(GenericStyle):
    """The generic scheme with tools described as JSON Schema instead of TypeScript."""

    name = "generic-json-schema"
    tools_format = "json_schema"


def _alternate(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge neighbouring turns of one role: many templates demand strict user/assistant alternation."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if out and out[-1]["role"] == m["role"] and m["role"] in ("user", "assistant"):
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append(dict(m))
    return out


__all__ = ["GenericJsonSchemaStyle", "GenericParser", "GenericStyle", "PlainParser", "envelope"]
