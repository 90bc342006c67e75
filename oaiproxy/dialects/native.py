"""The skeleton every model-native dialect (Llama 3, Functionary, Hermes, Mistral) follows.

A native dialect is one the model was trained on: tools reach it through the
chat template's own ``tools`` support (or, under ``--style`` on a template
without it, through a system prompt from ``templates/``), calls are text with a
recognisable opening (the trigger), and ``tool_choice`` maps onto llama-server's
grammar options the same way for all of them:

* ``none``: no tools in prompt or grammar; a ``response_format`` schema, if any,
  constrains the whole answer.
* ``auto``: a lazy grammar that wakes up on the dialect's triggers, so free text
  stays free and whatever follows a trigger is a valid call. With a
  ``response_format`` schema the grammar is eager instead: calls or the JSON answer.
* ``required`` / a named function: the calls grammar from the first token.

Subclasses describe their format: the grammar of the calls section, the
triggers, the stop words and the parser.
"""

from __future__ import annotations

from typing import Any

from oaiproxy.conversation.checks import checked_tools_key, tool_extras
from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.conversation.tools import ToolPlan, plan_tools
from oaiproxy.dialects.base import GenerationPlan, OutputParser, Reasoning, Style
from oaiproxy.dialects.gbnf import add_response_schema, lit
from oaiproxy.dialects.prompting import (
    PastCall,
    history_as_text,
    history_for_template,
    merge_system_into_user,
    openai_tool,
    render,
    render_prompt_text,
    response_schema,
    schema_note,
    template_variables,
    with_reasoning_fields,
    with_system_text,
)
from oaiproxy.dialects.reasoning import detect_reasoning
from oaiproxy.grammar import GrammarBuilder
from oaiproxy.templating.chat_template import SharedTool
from oaiproxy.templating.text_memo import TOOL_SECTIONS


class DialectStyle(Style):
    """A native tool-calling dialect; see the module docstring for the shared request semantics."""

    #: prefix of every grammar rule this dialect adds (keeps clear of the converter's names)
    rule_prefix: str = ""
    #: system prompt describing the tools, for templates without their own tools support
    fallback_prompt: str = ""
    #: stop words for every request in this dialect
    stop_words: tuple[str, ...] = ()
    #: special tokens the dialect's output contains (kept as text by llama-server)
    special_tokens: tuple[str, ...] = ()
    #: text a plain (JSON) answer starts with, e.g. Functionary v3.2's ``all\n`` recipient line
    answer_prefix: str = ""

    # -- what subclasses provide ----------------------------------------------------------

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """Add the rules for the calls section (starting at a trigger); return its rule name."""
        raise NotImplementedError

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        """llama-server ``grammar_triggers`` that start the calls section under ``auto``."""
        raise NotImplementedError

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        """A fresh parser; with ``tools.mode == "none"`` it must report text only."""
        raise NotImplementedError

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        """A past call written out in this dialect (for templates that cannot render tool_calls)."""
        raise NotImplementedError

    def render_extra(self, tools: ToolPlan) -> dict[str, Any]:
        """Extra variables the chat template wants (e.g. Llama's ``builtin_tools``)."""
        return {}

    def adjust_history(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Last chance to reshape the history for the template (e.g. one call per message)."""
        return messages

    def map_call_id(self, call_id: str) -> str:
        return call_id

    def reasoning_format(self) -> Reasoning | None:
        """The model's reasoning markers (None: not a thinking template); detected from the
        template source by default (:func:`oaiproxy.dialects.reasoning.detect_reasoning`). The
        engine generates the reasoning apart, so the parser only ever sees the answer."""
        return detect_reasoning(self.template.source)

    def template_variables(self, conversation: Conversation) -> dict[str, Any]:
        """The request's own template variables (``chat_template_kwargs``, ``reasoning_effort``,
        the thinking switches); a dialect with its own ``build_prompt`` passes them to ``render``."""
        return template_variables(conversation, self.reasoning_format() is not None, self.template.source)

    # -- the shared flow -------------------------------------------------------------------

    def prompt_plan(self, conversation: Conversation) -> GenerationPlan:
        """The prompt and a fresh parser; the grammar parts :meth:`plan` adds read only the tools
        (:func:`plan_tools`), the response schema and the template, never the messages."""
        tools = plan_tools(conversation)
        return GenerationPlan(prompt=self.build_prompt(conversation, tools, response_schema(conversation)),
                              parser=self.make_parser(tools))

    def plan(self, conversation: Conversation) -> GenerationPlan:
        tools = plan_tools(conversation)
        schema = response_schema(conversation)
        prompt = self.build_prompt(conversation, tools, schema)
        parser = self.make_parser(tools)
        plan = GenerationPlan(prompt=prompt, parser=parser, stop=list(self.stop_words),
                              reasoning=self.reasoning_format())
        builder = GrammarBuilder()
        if tools.mode == "none":
            if schema is not None:
                plan.grammar = builder.to_gbnf(self._answer_rule(builder, schema))
            return plan
        calls = self.calls_grammar(builder, tools)
        if tools.mode == "auto" and schema is not None:
            answer = self._answer_rule(builder, schema)
            root = builder.add_rule(f"{self.rule_prefix}-calls-or-answer", f"{calls} | {answer}")
            plan.grammar = builder.to_gbnf(root)
        elif tools.mode == "auto":
            plan.grammar = builder.to_gbnf(calls)
            plan.grammar_lazy = True
            plan.grammar_triggers = self.lazy_triggers(tools)
        else:
            plan.grammar = builder.to_gbnf(calls)
        plan.preserved_tokens = self.preserved_tokens(plan)
        return plan

    def _answer_rule(self, builder: GrammarBuilder, schema: dict[str, Any]) -> str:
        answer = add_response_schema(builder, schema, f"{self.rule_prefix}-response")
        if not self.answer_prefix:
            return answer
        return builder.add_rule(f"{self.rule_prefix}-answer", f"{lit(self.answer_prefix)} {answer}")

    def preserved_tokens(self, plan: GenerationPlan) -> list[str]:
        """Special tokens plus every trigger word: llama-server needs single-token triggers listed here."""
        words = list(self.special_tokens)
        for trig in plan.grammar_triggers:
            if trig.get("type") == "word" and trig["value"] not in words:
                words.append(trig["value"])
        return words

    def build_prompt(self, conversation: Conversation, tools: ToolPlan, schema: dict[str, Any] | None) -> str:
        template = self.template
        prompt_tools = [shared_openai_tool(t) for t in tools.prompt_tools]
        if template.supports_tools:
            messages = history_for_template(conversation.messages, self.map_call_id)
            messages = with_reasoning_fields(template, self.adjust_history(messages))
            if schema is not None:
                messages = with_system_text(messages, schema_note(schema), template.supports_system_role)
            return render(template, messages, prompt_tools or None,
                          **{**self.template_variables(conversation), **self.render_extra(tools)})
        messages = self.history_as_text(conversation.messages)
        notes = []
        if prompt_tools:
            keys = checked_tools_key(tools.prompt_tools)
            key = None if keys is None else (self.fallback_prompt, tools.parallel, tools.mode == "required", keys)
            notes.append(TOOL_SECTIONS.get(key, lambda: render_prompt_text(
                self.fallback_prompt, tools=prompt_tools, parallel=tools.parallel, required=tools.mode == "required")))
        if schema is not None:
            notes.append(schema_note(schema))
        if notes:
            messages = with_system_text(messages, "\n\n".join(notes), template.supports_system_role)
        elif not template.supports_system_role:
            messages = merge_system_into_user(messages)
        return render(template, messages, None, **self.template_variables(conversation))

    def history_as_text(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A history with calls and tool results spelled out as plain user/assistant text."""
        return history_as_text(messages, self._write_calls)

    def _write_calls(self, content: str, calls: list[PastCall]) -> str:
        return content + "".join(self.format_call_text(c.name, c.arguments, c.id) for c in calls)


def shared_openai_tool(spec: ToolSpec) -> dict[str, Any]:
    """:func:`openai_tool` of ``spec``; for a checked (canonical) spec the same :class:`SharedTool` every
    request, so the chat template's ``tojson`` of it is remembered rather than redone."""
    extras = tool_extras(spec)
    if extras is None:
        return openai_tool(spec)
    tool = extras.get("openai_tool")
    if tool is None:
        tool = extras["openai_tool"] = SharedTool(openai_tool(spec))
    assert isinstance(tool, SharedTool)
    return tool
