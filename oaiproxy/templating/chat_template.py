"""Render a model's Jinja2 chat template the way Hugging Face transformers does, safely.

Chat templates come from GGUF files, i.e. from strangers: they are rendered by
:mod:`oaiproxy.templating.sandbox` (Jinja2's immutable sandbox, plus a time and size
budget for every render), so a hostile one ends in a :class:`TemplateError`.
This module adds what makes a template a *chat* template.

The rendering context is the one transformers' ``apply_chat_template`` builds
(``messages``, ``tools``, ``add_generation_prompt``, ``bos_token``,
``eos_token``, ``raise_exception``, ``strftime_now``, a non-HTML-escaping
``tojson``, the ``{% generation %}`` tag) with the input normalisations llama.cpp (and for arguments vLLM)
also apply, because real templates depend on them:

* ``function.arguments`` of an assistant tool call arrives as a JSON string
  (OpenAI) but Llama 3.x, Hermes, Qwen, Mistral... iterate it or ``tojson`` it
  as an object (the transformers convention). A valid JSON object string is
  passed as a :class:`~oaiproxy.templating.sandbox.SourcedDict` whose ``str()`` is the
  original string, so templates that print it verbatim still print what the client sent.
* ``content: null`` (an assistant turn that only calls tools) becomes ``""``,
  so templates never print the word ``None``.
* A tool without ``description`` or ``parameters`` gets empty ones; no tools
  (``None`` or ``[]``) leaves ``tools`` undefined.

Also here: the default template for models without one and the stop strings it needs.

docs/chat-templates.md explains each choice and the few leniencies that match
llama.cpp's own Jinja engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes as jinja_nodes

from oaiproxy import resources
from oaiproxy.templating.sandbox import (
    FrozenTree,
    Opaque,
    OpaqueUse,
    RenderLimits,
    SandboxedTemplate,
    SourcedDict,
    TemplateError,
    TemplateRefusal,
    make_environment,
)

__all__ = [
    "ChatTemplate",
    "SharedTool",
    "TemplateError",
    "RenderLimits",
    "DEFAULT_TEMPLATE_STOPS",
]

#: Stop strings a model prompted with the default template needs: each marks the
#: start of a turn the model must not write itself (it would be inventing the
#: user's next message). Pass them as llama-server's ``stop``.
DEFAULT_TEMPLATE_STOPS: tuple[str, ...] = ("\nUser:", "\nSystem:", "\nTool result", "\nAssistant:")


class _GenerationTag(jinja2.ext.Extension):
    """transformers' ``{% generation %}...{% endgeneration %}``: marks the assistant's tokens for
    training masks. Rendering ignores the marking, as transformers does unless asked for the mask."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja_nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja_nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        body: str = caller()
        return body


def _raise_exception(message: Any) -> None:
    raise TemplateRefusal(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # transformers' override: no HTML escaping (Jinja's built-in turns < into \u003c) and
    # json.dumps' own defaults, which is what the model saw in training.
    # One leniency: iterators (``tools|map(attribute='function')``) serialise as lists, as in
    # llama.cpp, where transformers would fail.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys,
                      default=_json_default)


def _tojson_filter(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
                   sort_keys: bool = False) -> Any:
    """The ``tojson`` filter: :func:`_tojson`, but for the opaque tools list (see :meth:`ChatTemplate.render`)."""
    if indent is None and type(value) is list and value and all(isinstance(v, _OpaqueTool) for v in value):
        # ``tools|tojson`` of the opaque tools: without indent, json.dumps writes a list as its items' own
        # texts joined by the item separator, so this is that text, printable only as an opaque tool's is
        return _ToolsText(value, {"ensure_ascii": ensure_ascii, "separators": separators, "sort_keys": sort_keys})
    return _tojson(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _json_default(value: Any) -> Any:
    if isinstance(value, Opaque):
        raise OpaqueUse("tojson of a value that holds an opaque tool")
    if isinstance(value, Iterator):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ENV = make_environment(extensions=[_GenerationTag], filters={"tojson": _tojson_filter},
                        globals={"raise_exception": _raise_exception, "strftime_now": _strftime_now})


# --- input normalisation -------------------------------------------------------------------------


def _normalise_arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to be real arguments
            return arguments
        if isinstance(parsed, dict):
            return SourcedDict(arguments, parsed)
    return arguments


def _normalise_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copy the messages into the shape templates expect (see the module docstring)."""
    if not isinstance(messages, list):
        raise TemplateError(f"messages must be a list of message objects, got {type(messages).__name__}")
    result = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TemplateError(f"messages[{i}] must be an object, got {type(message).__name__}")
        message = dict(message)
        if message.get("content", "") is None:
            message["content"] = ""
        tool_calls = message.get("tool_calls")
        if isinstance(tool_calls, list):
            calls = []
            for call in tool_calls:
                if isinstance(call, dict) and isinstance(call.get("function"), dict):
                    function = dict(call["function"])
                    if "arguments" in function:
                        function["arguments"] = _normalise_arguments(function["arguments"])
                    call = {**call, "function": function}
                calls.append(call)
            message["tool_calls"] = calls
        result.append(message)
    return result


_NO_PARAMETERS = {"type": "object", "properties": {}}


def _normalise_tools(tools: list[Any]) -> list[Any]:
    """Fill in what OpenAI lets a client omit, as llama.cpp does: many templates print
    ``description`` and ``parameters`` unconditionally."""
    result = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise TemplateError(f"tools[{i}] must be an object, got {type(tool).__name__}")
        function = tool.get("function")
        if isinstance(function, dict) and (function.get("description") is None or function.get("parameters") is None):
            filled = {"name": function.get("name"),
                      "description": function.get("description") or "",
                      "parameters": function.get("parameters") or dict(_NO_PARAMETERS)}
            tool = {**tool, "function": {**filled, **{k: v for k, v in function.items() if k not in filled}}}
        result.append(tool)
    return result


def _input_chars(messages: Any, tools: Any) -> int:
    """About the input as text: ``len(json.dumps([messages, tools]))``, a shared tool's length remembered."""
    try:
        if not isinstance(tools, list) or not tools or not all(isinstance(t, SharedTool) for t in tools):
            return len(json.dumps([messages, tools], ensure_ascii=False, default=str))
        tools_chars = 2 + sum(len(_tool_json(t, (), {})) for t in tools) + 2 * (len(tools) - 1)
        return len(json.dumps(messages, ensure_ascii=False, default=str)) + tools_chars + 4  # "[", ", ", "]"
    except (TypeError, ValueError, RecursionError):
        return 0


class SharedTool(FrozenTree):
    """A tool (the OpenAI request shape, complete: ``description`` and ``parameters`` set) that its owner
    shares between requests and never changes, so its ``tojson`` texts are remembered on it (the
    tool memo's canonical tools, :func:`oaiproxy.conversation.checks.tool_extras`)."""

    __slots__ = ("texts",)

    def __init__(self, tool: dict[str, Any]):
        super().__init__(tool)
        self.texts: dict[Any, str] = {}


def _tool_json(tool: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``tool|tojson(*args, **kwargs)``; remembered on a :class:`SharedTool`."""
    if not isinstance(tool, SharedTool):
        return _tojson(tool, *args, **kwargs)
    key: Any = (args, tuple(kwargs.items())) if kwargs else args
    try:
        text = tool.texts.get(key)
    except TypeError:  # an unhashable parameter
        return _tojson(tool, *args, **kwargs)
    if text is None:
        text = tool.texts[key] = _tojson(tool, *args, **kwargs)
    return text


class _OpaqueTool(Opaque):
    """A tool as the first render sees it: it may be passed to ``tojson`` and nothing else."""

    __slots__ = ("tool",)

    def __init__(self, tool: dict[str, Any]):
        self.tool = tool

    def apply_filter(self, name: str, args: Any, kwargs: Any) -> Any:
        if name != "tojson":
            return super().apply_filter(name, args, kwargs)
        return _ToolText(self.tool, tuple(args), dict(kwargs))


class _ToolText(Opaque):
    """``tool|tojson(...)`` of an opaque tool: its text, only where it is printed straight to the output."""

    __slots__ = ("tool", "args", "kwargs")

    def __init__(self, tool: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.tool = tool
        self.args = args
        self.kwargs = kwargs

    def printed(self) -> str:
        return _tool_json(self.tool, self.args, self.kwargs)


class _ToolsText(Opaque):
    """``tools|tojson`` of the opaque tools (no indent): ``[`` + their texts joined by the item separator + ``]``."""

    __slots__ = ("tools", "kwargs")

    def __init__(self, tools: list[_OpaqueTool], kwargs: dict[str, Any]):
        self.tools = tools
        self.kwargs = kwargs

    def printed(self) -> str:
        separators = self.kwargs["separators"]
        item_separator = separators[0] if separators is not None else ", "
        return "[" + item_separator.join(_tool_json(t.tool, (), self.kwargs) for t in self.tools) + "]"


def _looks_into_itself(source: str) -> bool:
    """Whether a template has blocks (``self.name()`` gives a block's text as a value) or loads other
    templates: then even text printed at its top level may be changed, so its tools are never opaque."""
    try:
        ast = _ENV.parse(source)
    except Exception:  # noqa: BLE001 - the compile in ChatTemplate reports it
        return True
    return any(True for _ in ast.find_all((jinja_nodes.Block, jinja_nodes.Extends, jinja_nodes.Include,
                                            jinja_nodes.Import, jinja_nodes.FromImport)))


# --- public API -----------------------------------------------------------------------------------


class ChatTemplate:
    """One compiled chat template plus the special tokens it renders with."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "", name: str = "chat template",
                 limits: RenderLimits | None = None):
        self.source = source
        self.name = name
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""
        self.limits = limits or RenderLimits()
        self._sandboxed = SandboxedTemplate(source, name=name, environment=_ENV, limits=self.limits)
        self._supports_tools: bool | None = None
        self._supports_system_role: bool | None = None
        #: whether the tools can be rendered opaque (see :meth:`render`): None until a render says
        self._opaque_tools: bool | None = False if _looks_into_itself(source) else None

    @classmethod
    def default(cls, *, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
        """The template for models without one (``templates/default.jinja``); pair it with
        :data:`DEFAULT_TEMPLATE_STOPS`."""
        return cls(resources.read_text("templates", "default.jinja"), bos_token=bos_token, eos_token=eos_token,
                   name="default chat template")

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r}, {len(self.source)} chars)"

    def render(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
               add_generation_prompt: bool = True, **extra_context: Any) -> str:
        """Render the prompt; raises :class:`TemplateError` for anything the template cannot do."""
        try:
            normalised = _normalise_messages(messages)
        except TemplateError as e:
            raise TemplateError(f"{self.name}: {e}") from None
        context: dict[str, Any] = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **extra_context,
            "messages": normalised,
            "add_generation_prompt": add_generation_prompt,
        }
        if tools is not None and not isinstance(tools, list):
            raise TemplateError(f"{self.name}: tools must be a list of tool objects, got {type(tools).__name__}")
        input_chars = _input_chars(messages, tools)
        if tools:
            try:
                normalised_tools = _normalise_tools(tools)
            except TemplateError as e:
                raise TemplateError(f"{self.name}: {e}") from None
            if self._opaque_tools is not False:
                # First with each tool opaque: most templates only print ``tool|tojson``, and then the
                # prompt is the same text with each tool's JSON remembered instead of rendered (see
                # sandbox.Opaque). A template that looks into its tools raises OpaqueUse: rendered again
                # from the real tools, and never opaque again once that render worked.
                context["tools"] = [_OpaqueTool(t) for t in normalised_tools]
                try:
                    prompt = self._render(context, input_chars)
                except (OpaqueUse, TemplateError):
                    pass
                else:
                    self._opaque_tools = True
                    return prompt
                context["tools"] = normalised_tools
                prompt = self._render(context, input_chars)
                self._opaque_tools = False
                return prompt
            context["tools"] = normalised_tools
        else:
            # No tools: leave `tools` undefined, as llama.cpp does. transformers passes None, which
            # breaks templates that loop over tools unguarded (Hermes and Command R+ tool_use), and
            # an empty list makes Llama 3.x and Mistral announce an empty tool list.
            context.pop("tools", None)
        return self._render(context, input_chars)

    def _render(self, context: dict[str, Any], input_chars: int) -> str:
        try:
            return self._sandboxed.render(context, input_chars=input_chars)
        except TemplateRefusal as e:
            raise TemplateError(f"{self.name} refused the conversation: {e}") from None

    # --- capabilities, probed once per template ---------------------------------------------------

    _PROBE_TOOL = "oaiproxy_probe_tool"
    _PROBE_SYSTEM = "oaiproxy probe system text"

    @classmethod
    def _probe_tools(cls) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {
            "name": cls._PROBE_TOOL, "description": "Probe tool",
            "parameters": {"type": "object", "properties": {"arg": {"type": "string"}}, "required": ["arg"]}}}]

    @property
    def supports_tools(self) -> bool:
        """Whether the template describes the offered tools to the model itself.

        Probed rather than read from the source: some templates mention ``tools``
        only to refuse them, others only through a macro.
        """
        if self._supports_tools is None:
            try:
                prompt = self.render([{"role": "user", "content": "Hello"}], tools=self._probe_tools())
            except TemplateError:
                prompt = ""
            self._supports_tools = self._PROBE_TOOL in prompt
        return self._supports_tools

    @property
    def supports_system_role(self) -> bool:
        """Best effort: whether a system message renders, and in a conversation that does
        not start with a user turn (templates demanding strict alternation refuse it)."""
        if self._supports_system_role is None:
            conversation = [
                {"role": "system", "content": self._PROBE_SYSTEM},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "Bye"},
            ]
            prompt = ""
            for tools in (None, self._probe_tools()):  # some tool-use templates only render with tools
                try:
                    prompt = self.render(conversation, tools=tools)
                    break
                except TemplateError:
                    continue
            self._supports_system_role = self._PROBE_SYSTEM in prompt
        return self._supports_system_role
