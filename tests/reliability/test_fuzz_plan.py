"""Hostile and random tool lists through the whole planning stage, for every style.

Every request either plans (a prompt and a grammar) or is a 400 naming a
field; nothing else may escape — no KeyError, RecursionError or TypeError that
the HTTP layer would turn into a 500. A sample of the grammars then goes to the
real llama-server, which must accept them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from oaiproxy.api.chat.protocol import ChatCompletionRequest
from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.api.protocol import parse_request
from oaiproxy.dialects import STYLES
from oaiproxy.engine import Engine
from oaiproxy.errors import BadRequest
from oaiproxy.runtime.upstream import LlamaServerClient
from oaiproxy.settings import Settings
from oaiproxy.templating.chat_template import ChatTemplate
from tests.hypothesis_profiles import examples

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                    st.text(max_size=8))
keywords = st.sampled_from([
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "$ref", "$defs", "nullable",
    "not", "if", "then", "else", "uniqueItems", "multipleOf", "description", "title", "default",
])
types = st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array", "bogus"])
patterns = st.sampled_from(["^[a-z]+$", "(a|b)*c", "[0-9]{2,4}", "\\d+", "(", "a{99999}", "^(a+)+$", ".*",
                            "[^\\s]{1,5}", "\\p{L}", "(?=x)"])
formats = st.sampled_from(["date", "time", "date-time", "uuid", "email", "uri", "ipv4", "weird"])


def schemas() -> st.SearchStrategy:
    def extend(children: st.SearchStrategy) -> st.SearchStrategy:
        value = st.one_of(
            scalars, children, types, patterns, formats,
            st.lists(st.one_of(scalars, types, children), max_size=4),
            st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=4),
            st.sampled_from(["#/$defs/a", "#/definitions/x", "#", "http://example.com/s.json", "#/nope"]),
        )
        return st.dictionaries(keywords, value, max_size=5)

    base = st.one_of(st.booleans(), st.fixed_dictionaries({"type": types}), st.just({}))
    return st.recursive(base, extend, max_leaves=12)


def tool_lists() -> st.SearchStrategy:
    tool = st.fixed_dictionaries({
        "type": st.just("function"),
        "function": st.fixed_dictionaries({
            "name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
            "parameters": st.one_of(schemas(), st.fixed_dictionaries(
                {"type": st.just("object"), "properties": st.dictionaries(
                    st.from_regex(r"[a-z]{1,6}", fullmatch=True), schemas(), max_size=4)})),
        }),
    })
    return st.lists(tool, min_size=1, max_size=3, unique_by=lambda t: t["function"]["name"])


def engines(templates_dir: Path) -> list[ChatEngine]:
    client = LlamaServerClient("http://127.0.0.1:9")  # planning never calls it
    out = []
    for cls in STYLES.values():
        # each dialect's own representative template (from its samples; "default": the proxy's own)
        samples = cls.samples
        file = samples.representative if samples is not None else "default"
        template = (ChatTemplate.default() if file == "default"
                    else ChatTemplate((templates_dir / file).read_text(), name=file))
        engine = Engine.from_settings(Settings(), template=template, style=cls, client=client, model_id="m")
        out.append(ChatEngine(engine))
    return out


def plan_or_400(engine: ChatEngine, body: dict) -> dict | None:
    try:
        req: ChatCompletionRequest = parse_request(ChatCompletionRequest, body)
        _, _, upstream_body = engine.plan(req)
        return upstream_body
    except BadRequest as exc:
        assert exc.message and exc.param, f"a 400 must name its field: {exc.message!r} param={exc.param!r}"
        return None


@pytest.fixture(scope="module")
def all_engines(templates_dir: Path) -> list[ChatEngine]:
    return engines(templates_dir)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tools=tool_lists(), choice=st.sampled_from(["auto", "required", "none", "named"]),
       parallel=st.booleans(), data=st.data())
# found by random runs (a TypeError in styles/generic.example_arguments, a 500): kept as regressions
@example(tools=[{"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"a": {"type": "string"}}, "required": [{"x": 1}]}}}],
    choice="required", parallel=True, data=None)
@example(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": {"object": 1}}}}],
         choice="required", parallel=False, data=None)
@example(tools=[{"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"a": {"type": "string", "format": "email", "maxLength": 254}}}}}],
    choice="named", parallel=True, data=None)
def test_random_tools_plan_or_400(all_engines: list[ChatEngine], tools, choice, parallel, data) -> None:
    if data is None:  # an explicit example: every style
        chosen = all_engines
    else:
        chosen = [data.draw(st.sampled_from(all_engines), label="style")]
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": tools, "parallel_tool_calls": parallel,
            "tool_choice": choice if choice != "named" else
            {"type": "function", "function": {"name": tools[0]["function"]["name"]}}}
    for engine in chosen:
        plan_or_400(engine, body)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas(), data=st.data())
def test_random_response_format_plan_or_400(all_engines: list[ChatEngine], schema, data) -> None:
    engine = data.draw(st.sampled_from(all_engines), label="style")
    plan_or_400(engine, {"messages": [{"role": "user", "content": "hi"}],
                         "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string", "pattern": "(a|b|c){1,100000}"}}},
    {"type": "object", "properties": {"a": {"enum": [f"value-{i}" for i in range(200_000)]}}},
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": -10**40, "maximum": 10**40}}},
])
def test_pathological_schemas_are_bounded(all_engines: list[ChatEngine], schema) -> None:
    import time

    start = time.monotonic()
    for engine in all_engines:
        plan_or_400(engine, {"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required",
                             "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]})
    assert time.monotonic() - start < 60  # generous: the machine is noisy; a blow-up takes minutes


def test_deeply_nested_schema_is_400(all_engines: list[ChatEngine]) -> None:
    schema: dict = {"type": "string"}
    for _ in range(500):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    for engine in all_engines:
        tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
        body = {"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required", "tools": tools}
        assert plan_or_400(engine, body) is None


@pytest.mark.integration
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tools=tool_lists())
def test_llama_server_accepts_fuzzed_grammars(upstream, all_engines: list[ChatEngine], tools) -> None:
    generic = all_engines[[e.style.name for e in all_engines].index("generic")]
    body = plan_or_400(generic, {"messages": [{"role": "user", "content": "hi"}], "tools": tools,
                                 "tool_choice": "required"})
    if body is None:
        return
    body.update(n_predict=2, temperature=0)
    upstream.post("/completion", body)  # raises with llama-server's message if it rejects the grammar
