"""Special-token call sections: the grammar and parser shared by DeepSeek, Kimi K2 and Solar Open.

These formats wrap a turn's calls in one section of special tokens, and each
call in tokens of its own: a header that names the tool (and, in some, carries
the model's call id), a token, the JSON arguments, a closing token::

    SECTION_OPEN  CALL_OPEN header ARGS_OPEN {…json…} CALL_CLOSE  [SEP CALL_OPEN …]  SECTION_CLOSE

DeepSeek V3.1 writes ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}<｜tool▁call▁end｜>…
<｜tool▁calls▁end｜>``, Kimi K2 ``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX
<|tool_call_argument_begin|>{…}<|tool_call_end|>…``, Solar Open ``<|tool_calls|><|tool_call:begin|>ID
<|tool_call:name|>NAME<|tool_call:args|>{…}<|tool_call:end|>…<|calls|>``. A dialect module
describes its tokens (:class:`SectionFormat`), the GBNF of a tool's header and
how a header reads back (name and id); the rest is here. The section opener is
the lazy grammar's trigger word; every token is a preserved token, so
llama-server writes it out as text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.gbnf import add_tool_args, alternatives, lit, repeat_rule
from oaiproxy.dialects.streaming import JsonCallSection
from oaiproxy.grammar import GrammarBuilder

#: a header longer than this without its end is not a call's header (the text is given back as content)
MAX_HEADER = 256


@dataclass(frozen=True)
class SectionFormat:
    """The literal texts of one special-token call format."""

    #: opens the calls section: the lazy grammar's trigger word
    section_open: str
    #: opens each call; the call's header follows
    call_open: str
    #: ends the header; the JSON arguments follow
    args_open: str
    #: follows the JSON arguments
    call_close: str
    #: closes the section
    section_close: str
    #: what the templates write between two calls ("" for nothing)
    separator: str = ""

    @property
    def tokens(self) -> tuple[str, ...]:
        """The format's texts, for llama-server's preserved tokens (only single tokens of the vocabulary count)."""
        parts = (self.section_open, self.call_open, self.args_open.strip(), self.call_close.strip(),
                 self.section_close)
        return tuple(dict.fromkeys(p for p in parts if p))

    def call_text(self, header: str, arguments: str) -> str:
        """One call as the templates write it."""
        return f"{self.call_open}{header}{self.args_open}{arguments}{self.call_close}"

    def section_text(self, calls: list[tuple[str, str]]) -> str:
        """A whole section of (header, arguments) calls."""
        return self.section_open + self.separator.join(self.call_text(h, a) for h, a in calls) + self.section_close


def section_grammar(builder: GrammarBuilder, tools: ToolPlan, fmt: SectionFormat, prefix: str,
                    header: Callable[[int, ToolSpec], str]) -> str:
    """The section with up to ``max_calls`` calls, one alternative per tool; ``header(i, spec)`` is the GBNF
    of tool ``i``'s header. Arguments follow each tool's enforced schema (:func:`add_tool_args`)."""
    args = add_tool_args(builder, tools, prefix)
    call = alternatives(builder, f"{prefix}-call", [
        builder.add_rule(f"{prefix}-tool{i}-call",
                         f"{lit(fmt.call_open)} {header(i, spec)} {lit(fmt.args_open)} {args[spec.name]} "
                         f"{lit(fmt.call_close)}")
        for i, spec in tools.indexed])
    sep = f"{lit(fmt.separator)}?" if fmt.separator else '""'
    calls = repeat_rule(call, sep, tools.max_calls)
    return builder.add_rule(f"{prefix}-calls", f"{lit(fmt.section_open)} {calls} {lit(fmt.section_close)}")


#: a header read back: (tool name, the model's call id or None), or None when it is not a call's header
HeaderReader = Callable[[str], "tuple[str, str | None] | None"]


class SectionParser(JsonCallSection):
    """Content, then one section of calls; arguments stream as written.

    A call is announced when its header is complete (``args_open`` read), with
    the id the header carries when ``read_header`` gives one that no earlier
    call of the answer has (else a fresh id from ``make_id``). Text after the
    trigger that does not open a call is given back as content; a call whose
    closing token is missing still counts (its arguments are whole).
    """

    def __init__(self, fmt: SectionFormat, read_header: HeaderReader, enabled: bool = True,
                 make_id: Callable[[], str] | None = None) -> None:
        super().__init__(enabled)
        self.triggers = (fmt.section_open,)
        self._fmt = fmt
        self._read_header = read_header
        self._make_id = make_id
        self._call_close = fmt.call_close.lstrip()
        self._args_open = fmt.args_open

    def _enter(self, trigger: str) -> None:
        self._pending = trigger
        self._mode = "open"

    def _section(self) -> None:
        mode = self._mode
        if mode == "open":
            self._open()
        elif mode == "header":
            self._header()
        elif mode == "args":
            if self._stream_arguments():
                self._open_call = None
                self._mode = "close"
        elif mode == "close":
            if self._expect(self._call_close) is not False:  # a missing closing token does not undo a call
                self._mode = "next"
        elif mode == "next":
            self._next()

    def _open(self) -> None:
        before = self._buf
        done = self._expect(self._fmt.call_open)
        if done is None:
            self._not_a_call()
        elif done:
            self._pending += before[: len(before) - len(self._buf)]
            self._mode = "header"

    def _header(self) -> None:
        end = self._buf.find(self._args_open)
        if end < 0:
            if len(self._buf) > MAX_HEADER:
                self._not_a_call()
            return
        read = self._read_header(self._buf[:end])
        if read is None:
            self._not_a_call()
            return
        name, model_id = read
        self._buf = self._buf[end + len(self._args_open):]
        self._pending = ""
        call_id = model_id if model_id and not self.id_taken(model_id) else None
        if call_id is None and self._make_id is not None:
            call_id = self._make_id()
        self._begin_arguments(self.start_call(name, call_id))
        self._mode = "args"

    def _next(self) -> None:
        """After a call: the separator or whitespace, then another call or the section's end."""
        stripped = self._buf.lstrip()
        if not stripped:
            return
        for literal, mode in ((self._fmt.call_open, "header"), (self._fmt.section_close, "after")):
            if stripped.startswith(literal):
                self._buf = stripped[len(literal):]
                self._mode = mode
                return
        if not any(lit_.startswith(stripped) for lit_ in (self._fmt.call_open, self._fmt.section_close)):
            self._mode = "after"  # the section's end is missing: what follows is content again

    def _end_section(self) -> None:
        mode = self._mode
        if mode in ("open", "header"):
            self.truncated = mode == "header"  # a call had begun
            self.emit_content(self._pending + self._buf)
        elif mode == "args":
            self.truncated = True  # the call keeps the arguments written so far
        elif mode == "close" and self._expect(self._call_close) is None:
            self.emit_content(self._buf)
        elif mode == "next":
            stripped = self._buf.lstrip()
            if stripped and not any(lit_.startswith(stripped)
                                    for lit_ in (self._fmt.call_open, self._fmt.section_close)):
                self.emit_content(self._buf)
        self._buf = ""


__all__ = ["MAX_HEADER", "HeaderReader", "SectionFormat", "SectionParser", "section_grammar"]
