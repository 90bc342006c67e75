"""Style registry and detection on the real templates from llama.cpp; request-level rules shared by all styles."""

from __future__ import annotations

import pytest

from oaiproxy.dialects import STYLES, detect_style, get_style
from oaiproxy.conversation.tools import plan_tools
from oaiproxy.dialects._common import find_trigger, short_call_id_for
from oaiproxy.conversation.model import Conversation, NamedToolChoice
from oaiproxy.conversation.checks import check_conversation
from oaiproxy.errors import BadRequest

from .helpers import SEARCH, TOOLS, WEATHER

EXPECTED = {
    "meta-llama-Llama-3.1-8B-Instruct.jinja": "llama3",
    "meta-llama-Llama-3.2-3B-Instruct.jinja": "llama3",
    "meta-llama-Llama-3.3-70B-Instruct.jinja": "llama3",
    "meetkai-functionary-medium-v3.1.jinja": "functionary-v3.1",
    "meetkai-functionary-medium-v3.2.jinja": "functionary-v3.2",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": "hermes",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": "hermes",
    "Qwen-Qwen2.5-7B-Instruct.jinja": "hermes",
    "Qwen-Qwen3-0.6B.jinja": "hermes",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": "mistral-nemo",
    # other formats the dialects here do not speak: the generic scheme
    "Qwen3-Coder.jinja": "generic",
    "google-gemma-2-2b-it.jinja": "generic",
    "microsoft-Phi-3.5-mini-instruct.jinja": "generic",
    "unsloth-mistral-Devstral-Small-2507.jinja": "generic",
    "unsloth-Apriel-1.5.jinja": "generic",
}


@pytest.mark.parametrize("filename,style", sorted(EXPECTED.items()))
def test_detection_on_real_templates(templates_dir, filename, style):
    path = templates_dir / filename
    assert path.is_file(), path
    assert detect_style(path.read_text(encoding="utf-8")).name == style


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
