"""The streaming parser core every dialect's parser is built on: split-invariant, held-back, numbered calls.

A dialect parser only describes its format. The core does the bookkeeping:
content that cannot become a call is sent at once, text that might still be a
trigger is held back (:func:`find_trigger`), calls are numbered and streamed as
:class:`~oaiproxy.dialects.base.ToolCallDelta` events, and neighbouring pieces
are merged. Every decision depends on the text only, never on where chunks
were split.

The interface a dialect parser uses (and nothing else of the core's state):

* :class:`StreamParser`: ``_buf`` (text received, not yet consumed), the
  hooks ``_run``/``_end``, and :meth:`~StreamParser.emit_content`,
  :meth:`~StreamParser.start_call`, :meth:`~StreamParser.add_arguments`,
  :meth:`~StreamParser.id_taken`, :attr:`~StreamParser.truncated`.
* :class:`JsonCallSection` ("content, then a trigger, then JSON"): ``_mode``
  (``"content"`` and ``"after"`` are the core's, the rest the dialect's),
  ``_open_call`` (a call announced by the dialect, still being written), the
  hooks ``_enter``/``_section``/``_end_section``, and the helpers documented
  on the class.
* :class:`CallObjectReader`: one ``{"name": …, "arguments": …}`` object inside
  a JSON scan, streamed as a call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from oaiproxy.conversation.model import ToolCall
from oaiproxy.dialects._jsonscan import JsonScanError, JsonScanner, Path
from oaiproxy.dialects.base import ContentDelta, ParsedOutput, ParseEvent, ToolCallDelta
from oaiproxy.dialects.call_ids import new_call_id

#: what a JSON scan reports per character: (character, its value's path or None, values completed)
CharHandler = Callable[[str, "Path | None", "list[Path]"], None]


def partial_word_at_end(text: str, words: Iterable[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of one of ``words`` (0: none).

    That tail may still grow into the word: a trigger about to start, a stop string llama-server
    held back when the token limit came.
    """
    tail = 0
    for word in words:
        for k in range(min(len(word) - 1, len(text)), tail, -1):
            if text.endswith(word[:k]):
                tail = k
                break
    return tail


def find_trigger(buf: str, triggers: Iterable[str]) -> tuple[int, str | None]:
    """Earliest complete trigger in ``buf`` -> (position, trigger); else (safe length, None).

    Without a complete trigger, the safe length stops before the longest tail of
    ``buf`` that could still grow into a trigger: that tail is held back.
    """
    best: tuple[int, str] | None = None
    for trig in triggers:
        pos = buf.find(trig)
        if pos >= 0 and (best is None or pos < best[0] or (pos == best[0] and len(trig) > len(best[1]))):
            best = (pos, trig)
    if best is not None:
        return best[0], best[1]
    return len(buf) - partial_word_at_end(buf, triggers), None


class CallHandle:
    """A call the parser has announced: its number, id and name (its arguments are the core's)."""

    __slots__ = ("index", "id", "name", "_arguments")

    def __init__(self, index: int, call_id: str, name: str):
        self.index = index
        self.id = call_id
        self.name = name
        self._arguments: list[str] = []


class StreamParser:
    """Shared bookkeeping for the dialect parsers: content, numbered calls, event list.

    Subclasses implement :meth:`_run` (consume ``self._buf`` as far as decided)
    and :meth:`_end` (the text is over: flush or report what was held back).
    """

    def __init__(self) -> None:
        #: text received and not yet consumed (the subclass's to consume)
        self._buf = ""
        self.__events: list[ParseEvent] = []
        self.__content: list[str] = []
        self.__calls: list[CallHandle] = []
        self.__finished = False
        #: set when the text ended inside a tool call (n_predict ran out)
        self.truncated = False

    # -- the OutputParser protocol ------------------------------------------------------------

    def feed(self, chunk: str) -> list[ParseEvent]:
        if self.__finished:
            raise RuntimeError("feed() after finish()")
        self._buf += chunk
        self._run()
        return self.__take()

    def finish(self) -> list[ParseEvent]:
        if not self.__finished:
            self.__finished = True
            self._run()
            self._end()
        return self.__take()

    def result(self) -> ParsedOutput:
        content = "".join(self.__content)
        calls = [ToolCall(c.id, c.name, "".join(c._arguments)) for c in self.__calls]
        return ParsedOutput(content=content if content and (content.strip() or not calls) else None, tool_calls=calls)

    # -- what dialect parsers (and readers) report --------------------------------------------

    def emit_content(self, text: str) -> None:
        """Text the client may see now (never retracted)."""
        if text:
            self.__content.append(text)
            self.__events.append(ContentDelta(text))

    def start_call(self, name: str, call_id: str | None = None) -> CallHandle:
        """Announce the next call (numbered in order); a fresh id unless ``call_id`` is given."""
        call = CallHandle(len(self.__calls), call_id or new_call_id(), name)
        self.__calls.append(call)
        self.__events.append(ToolCallDelta(call.index, id=call.id, name=name))
        return call

    def add_arguments(self, call: CallHandle, piece: str) -> None:
        """More of ``call``'s arguments text."""
        if piece:
            call._arguments.append(piece)
            self.__events.append(ToolCallDelta(call.index, arguments=piece))

    def id_taken(self, call_id: str) -> bool:
        """Whether an earlier call of this answer has ``call_id``."""
        return any(c.id == call_id for c in self.__calls)

    # -- hooks --------------------------------------------------------------------------------

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _end(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __take(self) -> list[ParseEvent]:
        events, self.__events = self.__events, []
        return _merge(events)


def _merge(events: list[ParseEvent]) -> list[ParseEvent]:
    """Join neighbouring content pieces and argument pieces of one call: fewer, equal events."""
    out: list[ParseEvent] = []
    for ev in events:
        prev = out[-1] if out else None
        if isinstance(ev, ContentDelta) and isinstance(prev, ContentDelta):
            out[-1] = ContentDelta(prev.text + ev.text)
        elif (isinstance(ev, ToolCallDelta) and isinstance(prev, ToolCallDelta) and ev.index == prev.index
              and ev.id is None and ev.name is None):
            out[-1] = ToolCallDelta(prev.index, prev.id, prev.name, prev.arguments + ev.arguments)
        else:
            out.append(ev)
    return out


class CallObjectReader:
    """Follows one ``{"name": ..., "arguments": {...}}`` object inside a JSON scan and streams it as a call.

    ``prefix`` is the object's path in the scan. The call is announced as soon as
    its name is complete, then argument characters stream as they arrive; keys
    in another order are buffered until the name is known. With ``stream=False``
    (Mistral, whose id follows the arguments) the call is announced whole.
    """

    def __init__(
        self,
        parser: StreamParser,
        prefix: Path = (),
        args_keys: tuple[str, ...] = ("arguments",),
        id_key: str | None = None,
        stream: bool = True,
        make_id: Callable[[], str] = new_call_id,
    ) -> None:
        self._p = parser
        self._prefix = prefix
        self._n = len(prefix)
        self._args_keys = args_keys
        self._id_key = id_key
        self._stream = stream
        self._make_id = make_id
        self._name_raw: list[str] = []
        self._id_raw: list[str] = []
        self._args_raw: list[str] = []
        self._args_sent = 0
        self._name: str | None = None
        self._call: CallHandle | None = None
        self.done = False

    @property
    def started(self) -> bool:
        """Whether the call has been announced."""
        return self._call is not None

    def on_char(self, ch: str, path: Path | None, completed: list[Path]) -> None:
        if path is not None and path[: self._n] == self._prefix and len(path) > self._n:
            key = path[self._n]
            if key == "name":
                self._name_raw.append(ch)
            elif key in self._args_keys:
                self._args_raw.append(ch)
            elif key == self._id_key:
                self._id_raw.append(ch)
        for done in completed:
            if done == self._prefix + ("name",):
                self._name = _loads_str("".join(self._name_raw))
        if self._stream and self._name is not None:
            if self._call is None:
                self._call = self._p.start_call(self._name, self._make_id())
            self.flush()
        if self._prefix in completed:
            self.done = True
            if self._call is None:
                self._call = self._p.start_call(self._name or "", self._take_id())
            self.flush()
            if not self._args_raw:  # a call without arguments: OpenAI still wants an object
                self._p.add_arguments(self._call, "{}")

    def abort(self) -> None:
        """The text ended inside this object: report whatever was written, marked truncated."""
        self._p.truncated = True
        if self._call is None:
            name = self._name if self._name is not None else _loads_str("".join(self._name_raw) + '"')
            self._call = self._p.start_call(name or "", self._take_id())
        self.flush()

    def flush(self) -> None:
        """Send the argument characters read since the last flush (the call must be announced)."""
        assert self._call is not None
        piece = "".join(self._args_raw[self._args_sent:])
        self._args_sent = len(self._args_raw)
        self._p.add_arguments(self._call, piece)

    def _take_id(self) -> str:
        """The id the model wrote, unless it is empty or repeats an earlier call's id in this answer.

        The grammar cannot make ids distinct; the ids are the proxy's to give, and
        a repeated one would make two results indistinguishable, so it is replaced.
        """
        raw = "".join(self._id_raw)
        if self._id_key and raw:
            value = _loads_str(raw)
            if value and not self._p.id_taken(value):
                return value
        return self._make_id()


def _loads_str(raw: str) -> str:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw.strip('"')
    return value if isinstance(value, str) else str(value)


class JsonCallSection(StreamParser):
    """A parser for "content, then trigger, then JSON tool calls" dialects.

    Subclasses set ``triggers`` and implement :meth:`_enter` (a trigger was
    read), :meth:`_section` (consume the text of their own modes) and
    :meth:`_end_section` (the text ended in one of them). The helpers:

    * :meth:`_begin_json` / :meth:`_follow` / :meth:`_scan_json` /
      :meth:`_scan_with_reader`: scan a JSON value char by char, its calls read
      by :class:`CallObjectReader`\\ s;
    * :meth:`_begin_arguments` / :meth:`_stream_arguments`: scan a JSON value
      that is the arguments of a call the dialect announced (``_open_call``);
    * :meth:`_hold` / :meth:`_replay`: text kept since a trigger, given back as
      content when it turns out not to be a call; ``_pending`` with :meth:`_not_a_call`
      and :meth:`_broken` for the formats that read a name first;
    * :meth:`_expect`, :meth:`_after_call`, :meth:`_abort_json`, :meth:`_abort_calls`.
    """

    triggers: tuple[str, ...] = ()

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.__enabled = enabled
        self._mode = "content"
        self.__scanner: JsonScanner | None = None
        self.__reader: CallObjectReader | None = None
        self.__held = ""
        #: a call announced outside a CallObjectReader, still being written
        self._open_call: CallHandle | None = None
        #: formats that read a call's name before any JSON (the XML-like ones): the trigger and what followed
        #: it, while it is not yet known to be a call (given back by :meth:`_not_a_call`), and the call being read
        self._pending = ""
        self._call: CallHandle | None = None

    def _run(self) -> None:
        while self._buf:
            before = (self._mode, len(self._buf))
            if self._mode == "content":
                self.__scan_content()
            elif self._mode == "after":
                self._after_call()
            else:
                self._section()
            if (self._mode, len(self._buf)) == before:
                return

    def __scan_content(self) -> None:
        if not self.__enabled or not self.triggers:
            self.emit_content(self._buf)
            self._buf = ""
            return
        pos, trig = find_trigger(self._buf, self.triggers)
        self.emit_content(self._buf[:pos])
        if trig is None:
            self._buf = self._buf[pos:]
            return
        self._buf = self._buf[pos + len(trig):]
        self._enter(trig)

    # -- hooks --------------------------------------------------------------------------------

    def _enter(self, trigger: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _section(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _end_section(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _end(self) -> None:
        if self._mode == "content":
            self.emit_content(self._buf)
            self._buf = ""
        elif self._mode == "after":
            if self._buf.strip():
                self.emit_content(self._buf)
            self._buf = ""
        else:
            self._end_section()

    # -- helpers ------------------------------------------------------------------------------

    def _after_call(self) -> None:
        """Between calls: whitespace is dropped before another trigger, anything else is content."""
        stripped = self._buf.lstrip()
        if not stripped:
            return
        pos, trig = find_trigger(stripped, self.triggers)
        if trig is not None and pos == 0:
            self._buf = stripped[len(trig):]
            self._enter(trig)
        elif pos == 0:
            return  # could still become a trigger
        else:
            self._mode = "content"

    def _expect(self, literal: str) -> bool | None:
        """Consume optional whitespace then ``literal``: True done, False need more text, None mismatch."""
        stripped = self._buf.lstrip()
        if stripped.startswith(literal):
            self._buf = stripped[len(literal):]
            return True
        if literal.startswith(stripped):
            return False
        return None

    def _hold(self, text: str) -> None:
        """Keep ``text`` (a trigger just read) to give back as content if no call follows."""
        self.__held = text

    def _replay(self, with_pending: bool = False) -> None:
        """Give the held text back as content (and the pending text too, consuming it)."""
        if with_pending:
            self.emit_content(self.__held + self._buf)
            self._buf = ""
        else:
            self.emit_content(self.__held)

    def _not_a_call(self) -> None:
        """What followed the trigger is not a call: all of it (``_pending``) is content."""
        self.emit_content(self._pending)
        self._pending = ""
        self._mode = "content"

    def _broken(self) -> None:
        """The call's text left the format: it keeps what it has (validation reports it); the rest is text."""
        self.truncated = True
        self._call = None
        self._mode = "content"

    def _begin_json(self, trigger: str, reader: CallObjectReader | None = None) -> None:
        """Start scanning a JSON value right after ``trigger`` (held, to replay as text if it is not JSON)."""
        self.__scanner = JsonScanner()
        self.__held = trigger
        self.__reader = reader
        self._open_call = None

    def _follow(self, reader: CallObjectReader) -> None:
        """``reader`` is the call being written now: the one flushed if the JSON breaks off."""
        self.__reader = reader

    def _begin_arguments(self, call: CallHandle) -> None:
        """Start scanning a JSON value that is the arguments of ``call`` (announced by the dialect)."""
        self.__scanner = JsonScanner()
        self.__reader = None
        self._open_call = call

    @property
    def _json_begun(self) -> bool:
        """Whether the JSON value being scanned has started (its first character was read)."""
        return self.__scanner is not None and self.__scanner.started

    def _scan_with_reader(self) -> bool | None:
        """:meth:`_scan_json` with the current reader's ``on_char``."""
        reader = self.__reader
        assert reader is not None
        return self._scan_json(reader.on_char)

    def _stream_arguments(self) -> bool | None:
        """:meth:`_scan_json` sending each character of the value as ``_open_call``'s arguments."""
        call = self._open_call
        assert call is not None
        return self._scan_json(lambda ch, path, done: self.add_arguments(call, ch) if path is not None else None)

    def _scan_json(self, on_char: CharHandler) -> bool | None:
        """Feed buffered characters to the current JSON scan; True once its value ended.

        Whitespace before the value is skipped. Text that is not JSON returns
        None after handling it: if no call was announced yet, the trigger and
        everything up to the offending character become content; a call already
        announced stays (with its broken arguments, for validation to report).
        """
        scanner = self.__scanner
        assert scanner is not None
        i = 0
        buf = self._buf
        n = len(buf)
        try:
            while i < n and not scanner.done:
                ch = buf[i]
                i += 1
                path, completed = scanner.feed_char(ch)
                if scanner.rejected:
                    i -= 1
                    on_char("", None, completed)
                else:
                    on_char(ch, path, completed)
        except JsonScanError:
            self.__held += buf[:i]
            self._buf = buf[i:]
            reader = self.__reader
            if reader is not None and reader.started:
                self.truncated = True
                reader.flush()
            elif self._open_call is not None:
                self.truncated = True
            else:
                self.emit_content(self.__held)
            self._mode = "content"
            return None
        self.__held += buf[:i]
        self._buf = buf[i:]
        return scanner.done

    def _abort_json(self) -> None:
        """The text ended inside the JSON value: a value never begun is content, else a truncated call."""
        reader = self.__reader
        if self.__scanner is not None and not self.__scanner.started or reader is None:
            self.emit_content(self.__held + self._buf)
        else:
            reader.abort()
        self._buf = ""

    def _abort_calls(self, readers: Iterable[CallObjectReader]) -> None:
        """The text ended inside a JSON value that holds several calls, one reader each (the generic
        envelope, Mistral's list): a value never begun is content; else the output is truncated and
        every call not yet complete is cut."""
        if not self._json_begun:
            self._replay(with_pending=True)
            return
        self.truncated = True
        for reader in readers:
            if not reader.done:
                reader.abort()


__all__ = ["CallHandle", "CallObjectReader", "CharHandler", "JsonCallSection", "StreamParser", "find_trigger",
           "partial_word_at_end"]
