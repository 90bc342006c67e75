"""Hostile chat templates: GGUF files come from strangers, so every one of these must end in a
TemplateError, quickly, without touching anything outside the sandbox."""

from __future__ import annotations

import time

import pytest

from oaiproxy.templating.chat_template import ChatTemplate, RenderLimits, TemplateError
from tests.templates import samples

# Loose on purpose: the render deadline is 2 s, the machine is shared and noisy.
TIME_BOUND = 10.0


def render_hostile(source: str, limits: RenderLimits | None = None, **kwargs) -> TemplateError:
    started = time.monotonic()
    with pytest.raises(TemplateError) as info:
        ChatTemplate(source, name="hostile.gguf", limits=limits).render(samples.plain_conversation(), **kwargs)
    elapsed = time.monotonic() - started
    assert elapsed < TIME_BOUND, f"took {elapsed:.1f} s"
    assert "hostile.gguf" in str(info.value)
    return info.value


ESCAPES = {
    "self globals": "{{ self.__init__.__globals__ }}",
    "cycler globals": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner globals": "{{ joiner.__init__.__globals__ }}",
    "namespace globals": "{{ namespace.__init__.__globals__ }}",
    "str subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "messages class": "{{ messages.__class__ }}",
    "dict class via item": "{{ messages[0]['__class__'] }}{{ messages[0].__class__.__base__ }}",
    "loop internals": "{% for m in messages %}{{ loop.__class__ }}{% endfor %}",
    "generator frame": "{{ (messages | map('string')).gi_frame.f_globals }}",
    "raise_exception globals": "{{ raise_exception.__globals__ }}",
    "strftime_now globals": "{{ strftime_now.__globals__['datetime'] }}",
    "format string attribute walk": "{{ '{0.__class__}'.format(messages) }}",
    "mutate the caller's messages": "{% set _ = messages.append({'role': 'user'}) %}",
    "mutate the caller's message": "{% set _ = messages[0].update({'content': 'x'}) %}",
    "mutate the caller's tools": "{% set _ = tools.pop() %}",
}


@pytest.mark.parametrize("source", ESCAPES.values(), ids=ESCAPES.keys())
def test_attribute_escapes_are_refused(source):
    error = render_hostile(source, tools=samples.TOOLS)
    assert "sandbox" in str(error) or "unsafe" in str(error)


NO_OUTSIDE = {
    "import": "{% import 'os' as os %}{{ os }}",
    "include a file": "{% include '/etc/passwd' %}",
    "extends a file": "{% extends '/etc/passwd' %}",
    "open": "{{ open('/etc/passwd').read() }}",
    "python import": "{{ __import__('os').system('id') }}",
}


@pytest.mark.parametrize("source", NO_OUTSIDE.values(), ids=NO_OUTSIDE.keys())
def test_no_files_modules_or_builtins(source):
    render_hostile(source)


RUNAWAYS = {
    "range 10**9": "{% for i in range(10**9) %}x{% endfor %}",
    "nested ranges": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested loops over a list, no calls in the body": (
        "{% set l = range(100000) | list %}{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}"),
    "recursive macro": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "recursive macro through a filter": "{% macro f(n) %}{{ f(n) | upper }}{% endmacro %}{{ f(0) }}",
    "exponential macro": ("{% macro f(n) %}{% if n < 60 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}"
                          "{{ f(0) }}"),
    "string times 10**9": "{{ 'x' * 10**9 }}",
    "string times a literal billion": "{{ 'x' * 1000000000 }}",
    "list times a billion": "{{ ([1] * 1000000000) | length }}",
    "huge power": "{{ 10 ** (10 ** 10) }}",
    "power tower": "{{ (2 ** 4096) ** 4096 }}",
    "doubling with ~": ("{% set ns = namespace(s='x') %}"
                        "{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
    "doubling with +": ("{% set ns = namespace(s='x') %}"
                        "{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"),
    "list doubling": "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
    "appending forever": "{% set l = [0] %}{% for x in l %}{% set _ = l.append(x) %}{% endfor %}",
    "center filter": "{{ 'x' | center(10**9) }}",
    "center method": "{{ 'x'.center(999999999) }}",
    "ljust method": "{{ 'x'.ljust(999999999) }}",
    "percent width": "{{ '%0999999999d' % 1 }}",
    "format filter width": "{{ '%0999999999d' | format(1) }}",
    "str.format width": "{{ '{:>999999999}'.format(1) }}",
    "join of a big list": "{{ (['x' * 100000] * 100000) | join }}",
    "str.join of a big list": "{{ ''.join(['x' * 100000] * 100000) }}",
    "replace amplification": "{{ ('x' * 100000) | replace('', 'y' * 1000) }}",
    "indent amplification": "{{ ('\n' * 100000) | indent(100000) }}",
    "expandtabs amplification": "{{ ('\t' * 100000).expandtabs(1000000) }}",
    "tojson indent": "{{ messages | tojson(indent=100000) }}",
    "sum of lists": "{{ ([[1] * 100000] * 100000) | sum(start=[]) }}",
    "output flood": "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
}


#: runaways that build nothing big: only the deadline can stop them, so they get a short one
#: (the default 2 s would only make the test slower; the size checks never depend on it)
TIME_BOMBS = {RUNAWAYS[name] for name in ("nested ranges", "nested loops over a list, no calls in the body",
                                          "exponential macro")}


@pytest.mark.parametrize("source", RUNAWAYS.values(), ids=RUNAWAYS.keys())
def test_runaway_templates_are_stopped(source):
    if source in TIME_BOMBS:
        error = render_hostile(source, limits=RenderLimits(seconds=0.5))
        assert "rendering took longer than 0.5 s" in str(error)
        return
    error = render_hostile(source)
    assert "limit" in str(error) or "recursed" in str(error) or "longer than" in str(error)


def test_the_deadline_is_what_stops_a_slow_template():
    limits = RenderLimits(seconds=0.3)
    started = time.monotonic()
    with pytest.raises(TemplateError, match="longer than 0.3 s"):
        ChatTemplate("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                     limits=limits).render([])
    assert time.monotonic() - started < TIME_BOUND


def test_output_limit_grows_with_the_input():
    """A long conversation printed twice is legitimate; the same template on a short one cannot blow up."""
    template = ChatTemplate("{% for m in messages %}{{ m.content }}{{ m.content }}{% endfor %}")
    long_message = [{"role": "user", "content": "y" * 2_000_000}]
    assert len(template.render(long_message)) == 4_000_000


def test_a_template_can_still_build_its_own_lists_and_dicts():
    """Kimi K2's template appends to a list in a namespace; llama.cpp allows it, so do we."""
    source = ("{% set ns = namespace(ids=[]) %}{% set seen = {} %}{% for m in messages %}"
              "{% set _ = ns.ids.append(loop.index) %}{% set _ = seen.update({m.role: 1}) %}{% endfor %}"
              "{{ ns.ids | join(',') }} {{ seen | length }}")
    assert ChatTemplate(source).render(samples.plain_conversation()) == "1,2,3 2"


def test_a_spent_budget_cannot_be_swallowed():
    """Jinja catches some exceptions internally (e.g. in `default`); once the deadline passes,
    every later step fails again, so the render still ends."""
    limits = RenderLimits(seconds=0.2)
    source = ("{% for i in range(100000) %}{{ (messages[0].nope | default('')) }}"
              "{% for j in range(100000) %}{% endfor %}{% endfor %}")
    with pytest.raises(TemplateError, match="longer than"):
        ChatTemplate(source, limits=limits).render([{"role": "user", "content": "hi"}])


def test_after_a_hostile_template_normal_rendering_still_works():
    with pytest.raises(TemplateError):
        ChatTemplate("{{ 'x' * 10**9 }}").render([])
    assert ChatTemplate("{{ messages[0].content }}").render([{"role": "user", "content": "fine"}]) == "fine"


# A small list holding one big string many times, held many times: cheap to build, gigabytes to
# print. Sized here to 100 MB so that a failure of the guard cannot take the machine down.
ALIASED = "{% set s = 'x' * 100000 %}{% set inner = [s] * 100 %}{% set outer = [inner] * 10 %}"
ALIASING = {
    "printed": ALIASED + "{{ outer }}",
    "concatenated": ALIASED + "{{ outer ~ '' }}",
    "as json": ALIASED + "{{ outer | tojson }}",
    "through a string filter": ALIASED + "{{ outer | string | length }}",
    "joined": ALIASED + "{{ inner | join }}",
    "str.join": ALIASED + "{{ ''.join(inner) }}",
    "formatted": ALIASED + "{{ '%s' % (outer,) }}",
    "in a namespace": ALIASED + "{% set ns = namespace(v=outer) %}{{ ns }}",
}


@pytest.mark.parametrize("source", ALIASING.values(), ids=ALIASING.keys())
def test_shared_references_cannot_multiply_into_huge_text(source):
    error = render_hostile(source)
    # caught by measuring before the text is built ("would ..."), not by the output cap afterwards
    assert "would" in str(error), str(error)


def test_printing_a_self_containing_list_is_fine():
    source = "{% set l = [1] %}{% set _ = l.append(l) %}{{ l }}"
    assert ChatTemplate(source).render([]) == "[1, [...]]"


def test_the_time_allowed_grows_with_the_input():
    limits = RenderLimits(seconds=0.2, seconds_per_input_char=1e-6)
    long_conversation = [{"role": "user", "content": "z" * 300_000}]
    with pytest.raises(TemplateError, match=r"longer than 0\.5 s"):
        ChatTemplate("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                     limits=limits).render(long_conversation)


def test_the_sandbox_renders_any_template_under_the_same_guards():
    """oaiproxy.templating.sandbox knows nothing of chats: any template (our own prompt templates
    too) gets the immutable sandbox and the budget; a refusal raised by a global passes through."""
    from oaiproxy.templating.sandbox import SandboxedTemplate, TemplateRefusal, make_environment

    assert SandboxedTemplate("{% for x in items %}{{ x }};{% endfor %}").render({"items": [1, 2]}) == "1;2;"
    with pytest.raises(TemplateError, match="prompt.jinja exceeded its render limits"):
        SandboxedTemplate("{{ 'x' * 10**9 }}", name="prompt.jinja").render({})
    with pytest.raises(TemplateError, match="sandbox forbids"):
        SandboxedTemplate("{{ items.__class__ }}", name="prompt.jinja").render({"items": []})
    with pytest.raises(TemplateError, match="'append' of 'list' object is unsafe"):  # the caller's data is immutable
        SandboxedTemplate("{% set _ = items.append(1) %}", name="prompt.jinja").render({"items": []})

    def refuse(why: str) -> None:
        raise TemplateRefusal(why)

    env = make_environment(globals={"refuse": refuse}, filters={"shout": str.upper})
    assert SandboxedTemplate("{{ 'hi' | shout }}", environment=env).render({}) == "HI"
    with pytest.raises(TemplateRefusal, match="no thanks"):
        SandboxedTemplate("{{ refuse('no thanks') }}", environment=env).render({})
    with pytest.raises(TemplateError, match="limit"):  # an added filter is guarded like the built-in ones
        SandboxedTemplate("{{ 'x' | shout | center(10**9) }}", environment=env).render({})
