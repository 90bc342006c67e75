"""Style registry and detection on the real templates from llama.cpp; request-level rules shared by all styles."""

from __future__ import annotations

import pytest

from oaiproxy.conversation.checks import check_conversation
from oaiproxy.conversation.model import Conversation, NamedToolChoice
from oaiproxy.conversation.tools import plan_tools
from oaiproxy.dialects import STYLES, Style, detect_style, detection_order, get_style
from oaiproxy.dialects.call_ids import short_call_id_for
from oaiproxy.dialects.registry import detect_priority, fallback_style, register, sampled_styles
from oaiproxy.dialects.streaming import find_trigger
from oaiproxy.errors import BadRequest
from oaiproxy.templating.chat_template import ChatTemplate

from .helpers import SEARCH, TOOLS, WEATHER

#: template -> the dialect it speaks, as each dialect declares (its samples' templates and also_detected)
EXPECTED = {template: cls.name for cls in sampled_styles() if cls.samples is not None
            and (detect_priority(cls.name) is not None or cls is fallback_style())  # not the --style-only ones
            for template in (*cls.samples.templates, *cls.samples.also_detected)}


@pytest.mark.parametrize("filename,style", sorted(EXPECTED.items()))
def test_detection_on_real_templates(templates_dir, filename, style):
    if filename == "default":
        source = ChatTemplate.default().source
    else:
        path = templates_dir / filename
        assert path.is_file(), path
        source = path.read_text(encoding="utf-8")
    assert detect_style(source).name == style


def test_every_registered_dialect_is_reachable():
    order = detection_order()
    assert len({cls.name for cls in order}) == len(order)
    assert fallback_style() not in order  # the fallback claims nothing itself
    assert set(STYLES) >= {cls.name for cls in order} | {fallback_style().name}
    for cls in sampled_styles():
        assert cls.samples is not None and cls.samples.templates


def test_a_second_fallback_or_a_shared_priority_is_refused():
    class Other(Style):
        name = "other-test-dialect"

    with pytest.raises(ValueError, match="fallback"):
        register(fallback=True)(Other)
    with pytest.raises(ValueError, match="detect_priority"):
        register(detect_priority=detect_priority("hermes"))(Other)
    assert "other-test-dialect" not in STYLES and detect_priority("other-test-dialect") is None


def test_no_template_means_generic():
    assert detect_style(None).name == "generic"
    assert detect_style("").name == "generic"


def test_get_style_lists_valid_names():
    assert get_style("hermes") is STYLES["hermes"]
    with pytest.raises(ValueError) as e:
        get_style("hermes4")
    for name in STYLES:
        assert name in str(e.value)


def test_tool_plan_modes():
    conv = Conversation(messages=[], tools=TOOLS)
    assert plan_tools(conv).mode == "auto" and plan_tools(conv).names == ["get_weather", "search_web"]
    conv.tool_choice = "none"
    assert plan_tools(conv).mode == "none" and not plan_tools(conv).indexed
    conv.tool_choice = NamedToolChoice("search_web")
    named = plan_tools(conv)
    assert named.mode == "required" and named.indexed == ((1, SEARCH),)
    conv.parallel_tool_calls = False
    assert plan_tools(conv).max_calls == 1


@pytest.mark.parametrize("conv,param", [
    (Conversation(messages=[], tools=TOOLS, tool_choice=NamedToolChoice("nope")), "tool_choice"),
    (Conversation(messages=[], tools=[], tool_choice="required"), "tool_choice"),
    (Conversation(messages=[], tools=[WEATHER, WEATHER]), "tools[1].function.name"),
])
def test_tool_plan_errors_name_the_field(conv, param):
    # checked once, on the conversation; plan_tools only resolves a checked one
    with pytest.raises(BadRequest) as e:
        check_conversation(conv)
    assert e.value.param == param


def test_find_trigger_holds_back_possible_starts():
    assert find_trigger("hello <tool_call>x", ["<tool_call>"]) == (6, "<tool_call>")
    assert find_trigger("hello <tool_c", ["<tool_call>"]) == (6, None)
    assert find_trigger("hello <", ["<tool_call>", "<|python_tag|>"]) == (6, None)
    assert find_trigger("a < b", ["<tool_call>"]) == (5, None)


def test_short_call_ids_are_stable_and_mistral_shaped():
    sid = short_call_id_for("call_abc123")
    assert sid == short_call_id_for("call_abc123") and len(sid) == 9 and sid.isalnum()
    assert short_call_id_for("a1B2c3D4e") == "a1B2c3D4e"
