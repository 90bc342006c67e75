"""The default chat template (for models without one): a plain transcript a base model continues
as the assistant, ended by DEFAULT_TEMPLATE_STOPS."""

from __future__ import annotations

import pytest

from oaiproxy.templating.chat_template import DEFAULT_TEMPLATE_STOPS, ChatTemplate, TemplateError
from tests.templates import samples


@pytest.fixture(scope="module")
def default() -> ChatTemplate:
    return ChatTemplate.default(bos_token="<bos>", eos_token="<eos>")


def test_renders_every_role_as_a_labelled_paragraph(default):
    prompt = default.render(samples.answered_tool_conversation())
    assert prompt == (
        "<bos>"
        f"System: {samples.SYSTEM}\n\n"
        f"User: {samples.FIRST_USER}\n\n"
        'Assistant: (calls the tool get_weather with arguments {"city": "Paris", "unit": "celsius"})\n\n'
        f"Tool result from get_weather: {samples.TOOL_RESULT}\n\n"
        f"Assistant: {samples.ANSWER}\n\n"
        f"User: {samples.LAST_USER}\n\n"
        "Assistant:"
    )


def test_without_generation_prompt_the_transcript_just_ends(default):
    prompt = default.render(samples.plain_conversation(), add_generation_prompt=False)
    assert prompt.endswith(f"User: {samples.LAST_USER}")


def test_generation_prompt_alone_for_an_empty_conversation(default):
    assert default.render([]) == "<bos>Assistant:"


def test_assistant_text_and_several_calls(default):
    messages = [
        {"role": "user", "content": "Paris and Rome?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "b", "content": "18 C"},
        {"role": "tool", "name": "lookup", "content": "explicit name wins"},
    ]
    prompt = default.render(messages)
    assert ("Assistant: Checking both.\n"
            '(calls the tool get_weather with arguments {"city": "Paris"})\n'
            '(calls the tool get_weather with arguments {"city": "Rome"})\n\n') in prompt
    assert "Tool result from get_weather: 18 C\n\n" in prompt
    assert "Tool result from lookup: explicit name wins\n\n" in prompt


def test_developer_role_and_content_parts(default):
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "first part"}, {"type": "text", "text": "second"}]},
    ]
    assert default.render(messages) == "<bos>System: Be brief.\n\nUser: first part\nsecond\n\nAssistant:"


def test_unknown_role_is_refused_by_name(default):
    with pytest.raises(TemplateError, match="no role 'narrator'"):
        default.render([{"role": "narrator", "content": "Once upon a time"}])


def test_capabilities(default):
    assert default.supports_system_role
    assert not default.supports_tools  # tools are described by the dialect, not by this template


def test_every_turn_boundary_is_caught_by_a_stop(default):
    """Each label that starts a new paragraph must be a stop, or the model can write that turn."""
    prompt = default.render(samples.answered_tool_conversation(), add_generation_prompt=False)
    for paragraph in prompt.removeprefix("<bos>").split("\n\n")[1:]:
        assert any(("\n" + paragraph).startswith(stop) for stop in DEFAULT_TEMPLATE_STOPS), paragraph


# --- the real default model -----------------------------------------------------------------------------

CONVERSATIONS = {
    "greeting then question": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "single question": [
        {"role": "user", "content": "Name three colors."},
    ],
    "after a tool result": samples.answered_tool_conversation(),
}


@pytest.mark.integration
@pytest.mark.parametrize("messages", CONVERSATIONS.values(), ids=CONVERSATIONS.keys())
def test_default_model_answers_in_the_assistant_turn_and_stops(upstream, messages):
    prompt = ChatTemplate.default().render(messages)
    result = upstream.post("/completion", {
        "prompt": prompt, "n_predict": 48, "temperature": 0, "seed": 1, "cache_prompt": False,
        "stop": list(DEFAULT_TEMPLATE_STOPS),
    })
    answer = result["content"].strip()
    assert answer, f"empty answer: {result['content']!r}"
    for label in ("User:", "System:", "Assistant:", "Tool result"):
        assert label not in answer, f"the answer runs on into another turn: {result['content']!r}"
    # it ended its turn by starting the next one (caught by a stop), not by running out of tokens
    assert result.get("stop_type") == "word", f"no turn boundary within 48 tokens: {result['content']!r}"
    assert result.get("stopping_word") in DEFAULT_TEMPLATE_STOPS
