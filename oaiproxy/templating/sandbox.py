"""A sandboxed, budgeted Jinja2 environment for templates from strangers (and our own).

Chat templates come from GGUF files, i.e. from strangers. They are rendered in
Jinja2's immutable sandbox (no attribute escapes, no mutation of our data), and
on top of it every render runs against a budget: a wall-clock deadline checked
at every block, loop iteration, call, attribute lookup and operator, a cap on
the size of every string or list the template builds, and a cap on the output.
So a template that loops forever, recurses, multiplies strings into gigabytes
or pokes at ``__globals__`` ends in a :class:`TemplateError` instead of a hang,
a crash or an out-of-memory kill.

Nothing here knows about chats: :class:`SandboxedTemplate` renders any template
source against any context, in an environment :func:`make_environment` builds with
the caller's extensions, filters and globals (every one of them guarded like the
built-in ones). The Hugging Face chat-template conventions on top of it are in
:mod:`oaiproxy.templating.chat_template`; oaiproxy's own prompt templates
(``templates/``) can use it as they are.

Two leniencies of llama.cpp's Jinja engine that real templates depend on are
kept here, in the operators: ``'text' + undefined`` adds nothing (instead of
failing), and a :class:`SourcedDict` adds to a string as the text it was parsed from.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence, Sized
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

import jinja2
import jinja2.ext
from jinja2 import nodes as jinja_nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment, modifies_known_mutable

__all__ = [
    "FrozenTree",
    "Opaque",
    "OpaqueUse",
    "RenderLimits",
    "SandboxedTemplate",
    "SourcedDict",
    "TemplateError",
    "TemplateRefusal",
    "make_environment",
]

_TEMPLATE_FILENAME = "<sandboxed template>"  # marks the template's frames in a traceback


class TemplateError(Exception):
    """A template failed to compile or render; the message names the template."""


@dataclass(frozen=True)
class RenderLimits:
    """What one render may consume.

    The limits scale with the input: a template legitimately prints the whole
    conversation (often twice: once as text, once as ``tojson``), and some real
    ones are quadratic in the number of messages (Gemma 4's takes 0.8 s for 400
    messages in plain Jinja), so fixed caps would reject long conversations,
    while a template that blows up a short one is still caught quickly.
    """

    seconds: float = 2.0
    seconds_per_input_char: float = 1e-5  # +1 s per 100,000 input characters
    min_output_chars: int = 1_000_000
    output_per_input_char: int = 4
    max_int_argument: int = 1_000_000
    max_collection_items: int = 100_000


class _LimitExceeded(Exception):
    """Raised inside a render when its budget is spent; becomes a TemplateError."""


class TemplateRefusal(Exception):
    """The template's own refusal of its input, raised by a global the caller installs (a chat
    template's ``raise_exception``). :meth:`SandboxedTemplate.render` lets it through, so the
    caller words it ("... refused the conversation: ...")."""


@dataclass
class _Budget:
    deadline: float
    max_chars: int
    limits: RenderLimits
    seconds: float = 0.0  # the time allowed, for the message
    spent: str | None = None  # once set, every later checkpoint raises again
    frozen: frozenset[int] = frozenset()  # ids of the caller's containers: never mutable
    text_sizes: dict[int, int] = field(default_factory=dict)  # _text_size of frozen containers

    def checkpoint(self) -> None:
        if self.spent is None and time.monotonic() > self.deadline:
            self.spent = f"rendering took longer than {self.seconds or self.limits.seconds:g} s"
        if self.spent is not None:
            raise _LimitExceeded(self.spent)

    def fail(self, reason: str) -> None:
        self.spent = reason
        raise _LimitExceeded(reason)


# Compile-time constant folding also runs filters and operators; it gets a
# generous budget of its own so a template cannot stall compilation either.
_COMPILE_LIMITS = RenderLimits()
_budget: ContextVar[_Budget | None] = ContextVar("oaiproxy_template_budget", default=None)


def _current_budget() -> _Budget:
    budget = _budget.get()
    if budget is None:
        budget = _Budget(time.monotonic() + _COMPILE_LIMITS.seconds, _COMPILE_LIMITS.min_output_chars, _COMPILE_LIMITS)
    return budget


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return len(value)
    return 0


def _check_size(budget: _Budget, value: Any, what: str) -> Any:
    if isinstance(value, (str, bytes)):
        if len(value) > budget.max_chars:
            budget.fail(f"{what} built a string of {len(value)} characters (limit {budget.max_chars})")
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        if len(value) > budget.limits.max_collection_items:
            budget.fail(f"{what} built a collection of {len(value)} items "
                        f"(limit {budget.limits.max_collection_items})")
    return value


def _check_arguments(budget: _Budget, args: Iterable[Any], what: str) -> None:
    """Reject huge integers: every size blow-up through a call goes through one (``center(10**9)``)."""
    cap = budget.limits.max_int_argument
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > cap:
            budget.fail(f"{what} got the integer {arg if abs(arg) < 10**30 else '(huge)'}, above the limit {cap}")


_BIG_WIDTH = re.compile(r"\d{7,}")


def _check_format_string(budget: _Budget, text: Any, what: str) -> None:
    """A %-style or str.format width like ``%0999999999d`` allocates before anything returns."""
    if isinstance(text, str) and _BIG_WIDTH.search(text) and ("%" in text or "{" in text):
        budget.fail(f"{what}: format string asks for a field width or precision that is too large")


_CONTAINERS = (list, tuple, dict, set, frozenset, jinja2.utils.Namespace)


def _text_size(budget: _Budget, value: Any, what: str) -> int:
    """About ``len(str(value))`` (or of its JSON), without building it.

    A template can make a small list hold the same big string a thousand times, and that list
    a thousand times: cheap to build, gigabytes to print. Each object is measured once and
    counted as often as it is referenced, and the walk stops as soon as the limit is passed.
    """
    limit = budget.max_chars
    memo: dict[int, int] = {}

    def measure(item: Any) -> int:
        if isinstance(item, str):
            return len(item) + 2
        if not isinstance(item, _CONTAINERS):
            return 32
        key = id(item)
        known = budget.text_sizes.get(key, memo.get(key))
        if known is not None:
            return known
        memo[key] = 0  # a self-containing list prints as [...]
        if isinstance(item, jinja2.utils.Namespace):
            item = item._Namespace__attrs
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        total = 2
        for child in children:
            total += measure(child) + 2
            if total > limit:
                budget.fail(f"{what} would print a value of more than {limit} characters")
        if key in budget.frozen:
            budget.text_sizes[key] = total
        memo[key] = total
        return total

    size = measure(value)
    if size > limit:  # a size known from before (a frozen value measured earlier) is held to this limit too
        budget.fail(f"{what} would print a value of more than {limit} characters")
    return size


def _check_printable(budget: _Budget, values: Iterable[Any], what: str) -> None:
    for value in values:
        if isinstance(value, _CONTAINERS):
            _text_size(budget, value, what)


def _estimate_replace(budget: _Budget, text: Any, old: Any, new: Any, count: Any, what: str) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    hits = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * max(len(new) - len(old), 0) > budget.max_chars:
        budget.fail(f"{what} would build a string of more than {budget.max_chars} characters")


class OpaqueUse(Exception):
    """A template did something with an :class:`Opaque` value that the value does not allow."""


def _refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise OpaqueUse(f"a template used a {type(self).__name__} value in a way it does not allow")


class Opaque:
    """A value a template may hold, pass around and compare by identity (``x in list``), but not look
    into: every attribute, item, operator, test, conversion and comparison raises :class:`OpaqueUse`
    (never an error Jinja or a filter would turn into a default), except what the subclass allows:

    * :meth:`apply_filter`: a filter (or test) applied to the value itself;
    * :meth:`printed`: the text ``{{ value }}`` writes, and only where it goes straight to the output
      (at the top level of the template, not into a ``{% set %}`` block, a macro, a ``{% call %}`` or
      ``{% filter %}`` body or a recursive loop, whose text the template could go on to change).

    So what an opaque value contributes to a render is exactly what its :meth:`printed` texts say, at the
    places the template prints them, or the render fails. :class:`~oaiproxy.templating.chat_template.
    ChatTemplate` renders the tools this way first, then from the real tools if the template looked into them.
    """

    __slots__ = ()

    def apply_filter(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        raise OpaqueUse(f"filter or test {name!r} on a {type(self).__name__} value")

    def printed(self) -> str:
        raise OpaqueUse(f"printing a {type(self).__name__} value")

    __getattr__ = __getitem__ = __call__ = _refuse
    __str__ = __repr__ = __format__ = __bytes__ = __bool__ = __len__ = __iter__ = __reversed__ = _refuse
    __contains__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __mod__ = __rmod__ = _refuse
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __pow__ = __rpow__ = _refuse
    __neg__ = __pos__ = __abs__ = __invert__ = __int__ = __float__ = __index__ = __round__ = _refuse


class SourcedDict(dict[str, Any]):
    """A dict parsed from a JSON text that prints, and adds to strings, as that text.

    Templates iterate it or ``tojson`` it as an object; a template that prints it (or does
    ``'...' + value``) still prints exactly the text it came from.
    """

    def __init__(self, source: str, parsed: Mapping[str, Any]):
        super().__init__(parsed)
        self._source = source

    def __str__(self) -> str:
        return self._source


# --- the environment -------------------------------------------------------------------------


class _GuardedCodeGenerator(CodeGenerator):
    """Emits a budget checkpoint at the top of every block (loop bodies included) and routes
    ``~`` through a size check: the two things Jinja's sandbox never intercepts."""

    def blockvisit(self, nodes: Iterable[jinja_nodes.Node], frame: Frame) -> None:
        self.writeline("environment.checkpoint()")
        super().blockvisit(nodes, frame)

    def _output_child_pre(self, node: jinja_nodes.Expr, frame: Frame, finalize: Any) -> None:
        """Output into a buffer (a ``{% set %}`` block, a macro, a call or filter body, a recursive loop)
        is finalized by ``finalize_buffered``, which refuses an :class:`Opaque` value: that text could
        still be changed by the template before it reaches the output."""
        if frame.buffer is not None and finalize.src == "environment.finalize(":
            self.write("str(environment.finalize_buffered(")
            return
        super()._output_child_pre(node, frame, finalize)

    def visit_Concat(self, node: jinja_nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _GuardedEnvironment(ImmutableSandboxedEnvironment):
    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "**", "%"})
    intercepted_unops = frozenset({"+", "-"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Immutable for everything we pass in; a list or dict the template built itself may grow.

        Pure transformers refuses even that, but templates such as Kimi K2's
        (``ns.ids.append(...)``) rely on it and llama.cpp allows it; the caller's
        data stays untouchable and growth is capped like any other collection.
        """
        if not SandboxedEnvironment.is_safe_attribute(self, obj, attr, value):
            return False
        if modifies_known_mutable(obj, attr):
            return id(obj) not in _current_budget().frozen
        return True

    def checkpoint(self) -> None:
        _current_budget().checkpoint()

    def finalize_buffered(self, value: Any) -> Any:
        if isinstance(value, Opaque):
            raise OpaqueUse(f"a {type(value).__name__} value printed into a block the template may change")
        return _finalize_output(value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        """Fail at the attempt: Jinja's default is an undefined that prints as nothing, which
        would hide a template probing ``__class__`` & co."""
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def concat(self, parts: Iterable[Any]) -> str:
        parts = tuple(parts)
        budget = _current_budget()
        budget.checkpoint()
        _check_printable(budget, parts, "'~'")
        pieces = [str(p) for p in parts]
        if sum(map(len, pieces)) > budget.max_chars:
            budget.fail(f"'~' would build a string of more than {budget.max_chars} characters")
        return "".join(pieces)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        budget = _current_budget()
        budget.checkpoint()
        what = f"operator {operator!r}"
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
                if left.bit_length() * right > 65536:
                    budget.fail(f"{what}: the result would be a {left.bit_length() * right}-bit integer")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(times, int) and isinstance(seq, Sized) and not isinstance(seq, (int, bool)):
                    if _size(seq) * max(times, 0) > (budget.max_chars if isinstance(seq, str)
                                                      else budget.limits.max_collection_items):
                        budget.fail(f"{what} would build a value of {_size(seq)} x {times} items")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > 65536:
                budget.fail(f"{what}: integers too large")
        elif operator == "+":
            # a value parsed from JSON text still adds to strings like the text it was
            if isinstance(left, SourcedDict) and isinstance(right, str):
                left = str(left)
            elif isinstance(right, SourcedDict) and isinstance(left, str):
                right = str(right)
            # 'text' + missing_field adds nothing instead of failing, as in llama.cpp: a tool
            # parameter without a description must not make the whole request fail
            if isinstance(left, str) and isinstance(right, jinja2.Undefined):
                right = ""
            elif isinstance(right, str) and isinstance(left, jinja2.Undefined):
                left = ""
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                limit = budget.max_chars if isinstance(left, str) else budget.limits.max_collection_items
                if _size(left) + _size(right) > limit:
                    budget.fail(f"{what} would build a value of {_size(left) + _size(right)} items")
        elif operator == "%":
            _check_format_string(budget, left, what)
            _check_arguments(budget, right if isinstance(right, tuple) else (right,), what)
            _check_printable(budget, (right,), what)
        return _check_size(budget, super().call_binop(context, operator, left, right), what)

    def call_unop(self, context: jinja2.runtime.Context, operator: str, arg: Any) -> Any:
        _current_budget().checkpoint()
        return super().call_unop(context, operator, arg)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _current_budget().checkpoint()
        if isinstance(obj, Opaque):
            raise OpaqueUse(f"attribute {attribute!r} of a {type(obj).__name__} value")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _current_budget().checkpoint()
        if isinstance(obj, Opaque):
            raise OpaqueUse(f"an item of a {type(obj).__name__} value")
        return super().getitem(obj, argument)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _current_budget()
        budget.checkpoint()
        what = f"calling {getattr(__obj, '__name__', type(__obj).__name__)}()"
        _check_arguments(budget, (*args, *kwargs.values()), what)
        _check_printable(budget, (*args, *kwargs.values()), what)
        # the sandbox hands out str.format as a wrapper; look through it to the bound method
        method = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", "")
        if isinstance(owner, str):
            if name == "join" and args and isinstance(args[0], (list, tuple)):
                if _text_size(budget, args[0], what) + len(owner) * len(args[0]) > budget.max_chars:
                    budget.fail(f"{what} would build a string of more than {budget.max_chars} characters")
            elif name == "replace" and len(args) >= 2:
                _estimate_replace(budget, owner, args[0], args[1], args[2] if len(args) > 2 else -1, what)
            elif name == "expandtabs":
                width = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(width, int) and len(owner) + owner.count("\t") * width > budget.max_chars:
                    budget.fail(f"{what} would build a string of more than {budget.max_chars} characters")
            elif name in ("format", "format_map"):
                _check_format_string(budget, owner, what)
            elif name == "translate":
                budget.fail(f"{what} is not allowed in chat templates")
        result = _check_size(budget, super().call(__context, __obj, *args, **kwargs), what)
        if isinstance(owner, (list, dict, set)):  # list.append & co on a template-built collection
            _check_size(budget, owner, what)
        return result


def _opaque_filter(name: str, value: Opaque, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A filter or test on an :class:`Opaque` value: the parameters checked as for any filter, then the
    value's own :meth:`~Opaque.apply_filter` (which refuses what it does not know)."""
    budget = _current_budget()
    budget.checkpoint()
    if not rest and not kwargs:
        return value.apply_filter(name, rest, kwargs)
    what = f"filter {name!r}"
    if any(isinstance(v, Opaque) for v in (*rest, *kwargs.values())):
        raise OpaqueUse(f"{what} given a value it may not look into")
    _check_arguments(budget, (*rest, *kwargs.values()), what)
    if name == "tojson":
        indent = rest[1] if len(rest) > 1 else kwargs.get("indent")
        if (isinstance(indent, int) and indent > 64) or (isinstance(indent, str) and len(indent) > 64):
            budget.fail(f"{what}: indent is too large")
    return value.apply_filter(name, rest, kwargs)


def _guard_filter(name: str, func: Any) -> Any:
    """Give a filter the same checks as a call: filters bypass ``environment.call``."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], Opaque):
            return _opaque_filter(name, args[0], args[1:], kwargs)
        budget = _current_budget()
        budget.checkpoint()
        what = f"filter {name!r}"
        values = list(args)
        # pass_context / pass_eval_context / pass_environment filters get that object first
        while values and isinstance(values[0], (jinja2.runtime.Context, jinja2.nodes.EvalContext, jinja2.Environment)):
            values.pop(0)
        # the filtered value itself may be any number; only the parameters can ask for huge output
        _check_arguments(budget, (*values[1:], *kwargs.values()), what)
        if any(isinstance(v, Opaque) for v in (*values, *kwargs.values())):
            raise OpaqueUse(f"{what} given a value it may not look into")
        # most filters print their input (string, join, tojson, trim...): measure it first
        _check_printable(budget, (*values, *kwargs.values()), what)
        if values:
            value, rest = values[0], values[1:]
            if name == "join" and isinstance(value, (list, tuple)):
                separator = rest[0] if rest else kwargs.get("d", "")
                width = len(separator) if isinstance(separator, str) else 0
                if _text_size(budget, value, what) + width * len(value) > budget.max_chars:
                    budget.fail(f"{what} would build a string of more than {budget.max_chars} characters")
            elif name == "replace" and len(rest) >= 2:
                _estimate_replace(budget, value, rest[0], rest[1], rest[2] if len(rest) > 2 else None, what)
            elif name == "indent":
                width = rest[0] if rest else kwargs.get("width", 4)
                width_len = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
                if isinstance(value, str) and len(value) + (value.count("\n") + 1) * width_len > budget.max_chars:
                    budget.fail(f"{what} would build a string of more than {budget.max_chars} characters")
            elif name == "wordwrap":
                wrap = rest[2] if len(rest) > 2 else kwargs.get("wrapstring")
                if isinstance(value, str) and isinstance(wrap, str) and len(value) * (len(wrap) + 1) > budget.max_chars:
                    budget.fail(f"{what} would build a string of more than {budget.max_chars} characters")
            elif name == "format":
                _check_format_string(budget, value, what)
            elif name == "tojson":
                indent = rest[1] if len(rest) > 1 else kwargs.get("indent")
                if (isinstance(indent, int) and indent > 64) or (isinstance(indent, str) and len(indent) > 64):
                    budget.fail(f"{what}: indent is too large")
            elif name == "sum" and isinstance(value, (list, tuple)):
                if sum(_size(v) for v in value) > budget.limits.max_collection_items + budget.max_chars:
                    budget.fail(f"{what} would build a value that is too large")
        return _check_size(budget, func(*args, **kwargs), what)

    for attribute in ("jinja_pass_arg",):  # keep pass_context & co working
        if hasattr(func, attribute):
            setattr(guarded, attribute, getattr(func, attribute))
    guarded.__name__ = getattr(func, "__name__", name)
    return guarded


def _finalize_output(value: Any) -> Any:
    """Every ``{{ expression }}`` passes here before it is turned into text."""
    if isinstance(value, Opaque):
        return value.printed()
    if isinstance(value, _CONTAINERS):
        _check_printable(_current_budget(), (value,), "printing a value")
    return value


def make_environment(*, extensions: Sequence[type[jinja2.ext.Extension]] = (),
                     filters: Mapping[str, Callable[..., Any]] | None = None,
                     globals: Mapping[str, Any] | None = None) -> jinja2.Environment:
    """A guarded environment (``trim_blocks``, ``lstrip_blocks``, ``break``/``continue``) with the
    caller's extensions, filters and globals added; every filter and test, built-in or added,
    gets the checks of :meth:`_GuardedEnvironment.call`."""
    env = _GuardedEnvironment(trim_blocks=True, lstrip_blocks=True,
                              extensions=[jinja2.ext.loopcontrols, *extensions], finalize=_finalize_output)
    # Nothing is auto-escaped, so "safe" has nothing to protect from; a Markup result would instead
    # HTML-escape whatever plain string is added to it ("x"|safe + t|tojson gives &#34;).
    env.filters["safe"] = str
    env.filters.update(filters or {})
    env.filters = {name: _guard_filter(name, func) for name, func in env.filters.items()}
    env.tests = {name: _guard_filter(name, func) for name, func in env.tests.items()}
    env.globals.pop("lipsum", None)  # unused by real templates, and lipsum(n=10**6) is all allocation
    env.globals.update(globals or {})
    return env


_DEFAULT_ENV = make_environment()


@lru_cache(maxsize=256)
def _compile(env: jinja2.Environment, source: str) -> jinja2.Template:
    """Compile once per environment and distinct source; an environment is shared, so this is safe to share."""
    code = env.compile(source, filename=_TEMPLATE_FILENAME)
    return env.template_class.from_code(env, code, env.make_globals(None))


def _template_line(exc: BaseException) -> int | None:
    """The template line the error happened on, from Jinja's rewritten traceback."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class FrozenTree(dict[str, Any]):
    """A dict its owner never changes, nor anything in it, shared between renders: the containers in it and
    their text sizes (:func:`_text_size`) are worked out once, not on every render that is given it."""

    __slots__ = ("_ids", "_sizes")

    def __init__(self, value: Mapping[str, Any]):
        super().__init__(value)
        self._ids: frozenset[int] | None = None
        self._sizes: dict[int, int] = {}

    def frozen_ids(self) -> frozenset[int]:
        if self._ids is None:
            ids = _walk_containers([self], _NO_SIZES)
            budget = _Budget(math.inf, sys.maxsize, _COMPILE_LIMITS, frozen=ids)
            _text_size(budget, self, "measuring a shared value")
            self._sizes, self._ids = budget.text_sizes, ids
        return self._ids


def _walk_containers(values: list[Any], sizes: dict[int, int]) -> frozenset[int]:
    seen: set[int] = set()
    stack = values
    while stack:
        value = stack.pop()
        if isinstance(value, (list, tuple, dict, set)) and id(value) not in seen:
            if isinstance(value, FrozenTree) and sizes is not _NO_SIZES:
                seen |= value.frozen_ids()
                sizes.update(value._sizes)
                continue
            if not isinstance(value, tuple):
                seen.add(id(value))
            stack.extend(value.values() if isinstance(value, dict) else value)
    return frozenset(seen)


_NO_SIZES: dict[int, int] = {}


def _container_ids(*values: Any, sizes: dict[int, int] | None = None) -> frozenset[int]:
    """Every list, dict and set reachable from the inputs: the objects a template must not mutate. The text
    sizes of those inside a :class:`FrozenTree`, worked out once, are added to ``sizes``."""
    return _walk_containers(list(values), _NO_SIZES if sizes is None else sizes)


class SandboxedTemplate:
    """One compiled template and the environment it renders in (:func:`make_environment`'s)."""

    def __init__(self, source: str, *, name: str = "template", environment: jinja2.Environment | None = None,
                 limits: RenderLimits | None = None):
        if not isinstance(source, str):
            raise TemplateError(f"{name}: template source must be a string, got {type(source).__name__}")
        self.source = source
        self.name = name
        self.limits = limits or RenderLimits()
        token = _budget.set(_Budget(time.monotonic() + _COMPILE_LIMITS.seconds * 5, _COMPILE_LIMITS.min_output_chars,
                                    _COMPILE_LIMITS))
        try:
            self.template = _compile(environment or _DEFAULT_ENV, source)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{name}: syntax error at line {e.lineno}: {e.message}") from None
        except (_LimitExceeded, RecursionError, MemoryError) as e:
            raise TemplateError(f"{name}: could not compile: {e or type(e).__name__}") from None
        except Exception as e:  # anything else the compiler trips on is still the template's fault
            raise TemplateError(f"{name}: could not compile: {type(e).__name__}: {e}") from None
        finally:
            _budget.reset(token)

    def render(self, context: dict[str, Any], *, input_chars: int = 0) -> str:
        """Render against ``context``, whose containers the template may read but not change.

        ``input_chars`` (about the size of the input as text) scales the budget: the output
        may be ``output_per_input_char`` times longer, and the deadline grows by
        ``seconds_per_input_char`` per character. Raises :class:`TemplateError` for anything the
        template cannot do, and lets a :class:`TemplateRefusal` (and an :class:`OpaqueUse`) through.
        """
        max_chars = max(self.limits.min_output_chars, self.limits.output_per_input_char * input_chars)
        seconds = round(self.limits.seconds + self.limits.seconds_per_input_char * input_chars, 1)
        sizes: dict[int, int] = {}
        budget = _Budget(time.monotonic() + seconds, max_chars, self.limits, seconds,
                         frozen=_container_ids(context, sizes=sizes), text_sizes=sizes)
        token = _budget.set(budget)
        chunks: list[str] = []
        total = 0
        try:
            stream = cast(Generator[str, None, None], self.template.generate(context))
            try:
                for chunk in stream:
                    total += len(chunk)
                    if total > max_chars:
                        budget.fail(f"output is longer than {max_chars} characters")
                    budget.checkpoint()
                    chunks.append(chunk)
            finally:
                stream.close()
        except (TemplateRefusal, OpaqueUse):
            raise
        except _LimitExceeded as e:
            raise TemplateError(f"{self.name} exceeded its render limits: {e}") from None
        except SecurityError as e:
            raise TemplateError(f"{self.name} tried something the sandbox forbids{self._at(e)}: {e}") from None
        except RecursionError as e:
            raise TemplateError(f"{self.name} recursed too deeply{self._at(e)}") from None
        except MemoryError as e:
            raise TemplateError(f"{self.name} ran out of memory{self._at(e)}") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"{self.name} failed{self._at(e)}: {e.message or type(e).__name__}") from None
        except Exception as e:
            raise TemplateError(f"{self.name} failed{self._at(e)}: {type(e).__name__}: {e}") from None
        finally:
            _budget.reset(token)
        return "".join(chunks)

    @staticmethod
    def _at(exc: BaseException) -> str:
        line = _template_line(exc)
        return f" at line {line}" if line else ""
