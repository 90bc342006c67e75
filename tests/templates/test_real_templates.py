"""Every real chat template shipped with llama.cpp renders (or refuses cleanly), and the
tool-calling dialects come out in the exact shape their models were trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from oaiproxy.templating.chat_template import ChatTemplate, TemplateError
from tests.templates import samples

# Templates that refuse a tool result followed directly by a user turn: once tool turns are set
# aside, user/assistant must alternate (an assistant answer is missing), or there is no system role.
REFUSE_UNANSWERED_TOOL_RESULT = {
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
    "google-gemma-2-2b-it.jinja",
}
NO_SYSTEM_ROLE = {"google-gemma-2-2b-it.jinja"}


def load(templates_dir: Path, name: str, **kwargs) -> ChatTemplate:
    path = templates_dir / name
    if not path.is_file():
        pytest.fail(f"real template {path} is missing from the llama.cpp assets")
    return ChatTemplate(path.read_text(encoding="utf-8"), name=name, **kwargs)


def all_templates(templates_dir: Path) -> list[Path]:
    paths = sorted(templates_dir.glob("*.jinja"))
    assert len(paths) >= 50, f"expected llama.cpp's ~70 real templates in {templates_dir}, found {len(paths)}"
    return paths


def test_every_real_template_renders_the_tool_conversation_or_refuses_cleanly(templates_dir):
    problems = []
    for path in all_templates(templates_dir):
        template = ChatTemplate(path.read_text(encoding="utf-8"), name=path.name, bos_token="<s>", eos_token="</s>")
        try:
            prompt = template.render(samples.tool_conversation(), tools=samples.TOOLS)
        except TemplateError as e:
            if path.name not in REFUSE_UNANSWERED_TOOL_RESULT:
                problems.append(f"{path.name}: {e}")
            continue
        if path.name in REFUSE_UNANSWERED_TOOL_RESULT:
            problems.append(f"{path.name}: rendered a conversation it is expected to refuse")
        if samples.LAST_USER not in prompt:
            problems.append(f"{path.name}: the last user message is missing from the prompt")
    assert not problems, "\n".join(problems)


def test_every_real_template_renders_an_alternating_tool_conversation(templates_dir):
    problems = []
    for path in all_templates(templates_dir):
        if path.name in NO_SYSTEM_ROLE:
            continue
        template = ChatTemplate(path.read_text(encoding="utf-8"), name=path.name, bos_token="<s>", eos_token="</s>")
        try:
            prompt = template.render(samples.answered_tool_conversation(), tools=samples.TOOLS)
        except TemplateError as e:
            problems.append(f"{path.name}: {e}")
            continue
        for text in (samples.SYSTEM, samples.FIRST_USER, samples.LAST_USER):
            if text not in prompt:
                problems.append(f"{path.name}: {text!r} is missing from the prompt")
        if "{'city': 'Paris'" in prompt:
            problems.append(f"{path.name}: the call's arguments were printed as a Python dict")
        if "None" in prompt and "None" not in path.read_text(encoding="utf-8"):
            problems.append(f"{path.name}: a null from our input was printed as None")
        if template.supports_tools and samples.TOOLS[0]["function"]["description"] not in prompt:
            problems.append(f"{path.name}: supports_tools, yet the tool description is not in the prompt")
    assert not problems, "\n".join(problems)


def test_every_real_template_renders_a_plain_chat_without_tools(templates_dir):
    problems = []
    for path in all_templates(templates_dir):
        template = ChatTemplate(path.read_text(encoding="utf-8"), name=path.name)
        try:
            prompt = template.render(samples.plain_conversation())
        except TemplateError as e:
            problems.append(f"{path.name}: {e}")
            continue
        if samples.LAST_USER not in prompt:
            problems.append(f"{path.name}: last user message missing")
    assert not problems, "\n".join(problems)


# --- the dialect templates, one by one -----------------------------------------------------------------

ARGS_JSON = '{"city": "Paris", "unit": "celsius"}'


@pytest.mark.parametrize("name", [
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "meta-llama-Llama-3.3-70B-Instruct.jinja",
])
def test_llama_3_x(templates_dir, name):
    template = load(templates_dir, name, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    prompt = template.render(samples.answered_tool_conversation(), tools=samples.TOOLS, date_string="01 Jan 2025")
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
    assert "Environment: ipython\n" in prompt
    assert "Today Date: 01 Jan 2025\n" in prompt
    assert '"name": "get_weather",' in prompt  # tools as indented JSON in the first user turn
    # the call: arguments rendered as an object under "parameters"
    call = f'{{"name": "get_weather", "parameters": {ARGS_JSON}}}'
    assert f"<|start_header_id|>assistant<|end_header_id|>\n\n{call}<|eot_id|>" in prompt
    assert "<|start_header_id|>ipython<|end_header_id|>\n\n" in prompt
    assert prompt.endswith(f"{samples.LAST_USER}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert template.supports_tools and template.supports_system_role


def test_functionary_v3_1(templates_dir):
    template = load(templates_dir, "meetkai-functionary-medium-v3.1.jinja")
    prompt = template.render(samples.answered_tool_conversation(), tools=samples.TOOLS)
    assert "Use the function 'get_weather' to 'Get the current weather'\n{\"name\": \"get_weather\", " in prompt
    assert "&#34;" not in prompt
    assert f"<function=get_weather>{ARGS_JSON}</function><|eom_id|>" in prompt
    assert f"<|start_header_id|>ipython<|end_header_id|>\n\n{samples.TOOL_RESULT}<|eot_id|>" in prompt
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_functionary_v3_2(templates_dir):
    template = load(templates_dir, "meetkai-functionary-medium-v3.2.jinja")
    prompt = template.render(samples.answered_tool_conversation(), tools=samples.TOOLS)
    assert "namespace functions {\n\n// Get the current weather\ntype get_weather = (_: {\n" in prompt
    assert 'unit?: "celsius" | "fahrenheit",' in prompt
    assert f">>>get_weather\n{ARGS_JSON}<|eot_id|>" in prompt
    assert f"<|start_header_id|>tool<|end_header_id|>\n\n{samples.TOOL_RESULT}<|eot_id|>" in prompt
    assert f">>>all\n{samples.ANSWER}<|eot_id|>" in prompt
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n>>>")


@pytest.mark.parametrize("name", [
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
])
def test_hermes(templates_dir, name):
    template = load(templates_dir, name, bos_token="<|begin_of_text|>")
    prompt = template.render(samples.answered_tool_conversation(), tools=samples.TOOLS)
    assert prompt.startswith("<|begin_of_text|><|im_start|>system\nYou are a function calling AI model.")
    assert '<tools> {"type": "function", "function": {"name": "get_weather", ' in prompt
    assert f'<tool_call>\n{{"name": "get_weather", "arguments": {ARGS_JSON}}}\n</tool_call><|im_end|>' in prompt
    assert f"<|im_start|>tool\n<tool_response>\n{samples.TOOL_RESULT}\n</tool_response>\n<|im_end|>" in prompt
    assert f"<|im_start|>system\n{samples.SYSTEM}<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("name", ["Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja"])
def test_qwen(templates_dir, name):
    template = load(templates_dir, name)
    prompt = template.render(samples.answered_tool_conversation(), tools=samples.TOOLS)
    assert prompt.startswith(f"<|im_start|>system\n{samples.SYSTEM}\n\n# Tools\n")
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather", "description": ' in prompt
    assert f'<tool_call>\n{{"name": "get_weather", "arguments": {ARGS_JSON}}}\n</tool_call><|im_end|>' in prompt
    assert f"<|im_start|>user\n<tool_response>\n{samples.TOOL_RESULT}\n</tool_response><|im_end|>" in prompt
    assert prompt.endswith(f"{samples.LAST_USER}<|im_end|>\n<|im_start|>assistant\n")


def test_qwen3_thinking_switch_reaches_the_template(templates_dir):
    template = load(templates_dir, "Qwen-Qwen3-0.6B.jinja")
    off = template.render(samples.plain_conversation(), enable_thinking=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not template.render(samples.plain_conversation()).endswith("</think>\n\n")


def test_mistral_nemo(templates_dir):
    template = load(templates_dir, "mistralai-Mistral-Nemo-Instruct-2407.jinja", bos_token="<s>", eos_token="</s>")
    prompt = template.render(samples.answered_tool_conversation(), tools=samples.TOOLS)
    assert prompt.startswith(f"<s>[INST]{samples.FIRST_USER}[/INST]")
    assert f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {ARGS_JSON}, "id": "call00001"}}]</s>' in prompt
    assert '[TOOL_RESULTS]{"content": {"temp_c": 21}, "call_id": "call00001"}[/TOOL_RESULTS]' in prompt
    # tools and the system message go with the last user turn
    assert '[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather", ' in prompt
    assert prompt.endswith(f"[/AVAILABLE_TOOLS][INST]{samples.SYSTEM}\n\n{samples.LAST_USER}[/INST]")
    assert template.supports_tools


def test_mistral_nemo_refusals_are_template_errors(templates_dir):
    template = load(templates_dir, "mistralai-Mistral-Nemo-Instruct-2407.jinja")
    with pytest.raises(TemplateError, match="roles must alternate"):
        template.render(samples.tool_conversation(), tools=samples.TOOLS)
    messages = samples.answered_tool_conversation()
    messages[2]["tool_calls"][0]["id"] = "call_abc123xyz"
    with pytest.raises(TemplateError, match="length 9"):
        template.render(messages, tools=samples.TOOLS)


def test_gemma_2(templates_dir):
    template = load(templates_dir, "google-gemma-2-2b-it.jinja", bos_token="<bos>", eos_token="<eos>")
    prompt = template.render(samples.plain_conversation())
    assert prompt.startswith(f"<bos><start_of_turn>user\n{samples.FIRST_USER}<end_of_turn>\n")
    assert f"<start_of_turn>model\n{samples.ANSWER}<end_of_turn>\n" in prompt
    assert prompt.endswith(f"<start_of_turn>user\n{samples.LAST_USER}<end_of_turn>\n<start_of_turn>model\n")
    with pytest.raises(TemplateError, match="System role not supported"):
        template.render([{"role": "system", "content": samples.SYSTEM}, *samples.plain_conversation()])
    assert not template.supports_system_role
    assert not template.supports_tools


def test_a_long_conversation_fits_the_budget_of_a_slow_real_template(templates_dir):
    """Gemma 4's template is quadratic in the number of messages (about 1 s for 400 messages even
    in plain Jinja): the time allowed grows with the input, so long chats still render."""
    template = load(templates_dir, "google-gemma-4-31B-it.jinja")
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "word " * 200}
                for i in range(400)]
    prompt = template.render(messages, tools=samples.TOOLS)
    assert "message 399 " in prompt


def test_a_tool_with_only_a_name_renders_wherever_full_tools_do(templates_dir):
    """OpenAI makes `description` and `parameters` optional; templates print them regardless."""
    minimal = [{"type": "function", "function": {"name": "get_time"}}]
    problems = []
    for path in all_templates(templates_dir):
        if path.name in NO_SYSTEM_ROLE:
            continue
        template = ChatTemplate(path.read_text(encoding="utf-8"), name=path.name)
        try:
            prompt = template.render(samples.plain_conversation(), tools=minimal)
        except TemplateError as e:
            problems.append(f"{path.name}: {e}")
            continue
        if template.supports_tools and "get_time" not in prompt:
            problems.append(f"{path.name}: the tool is missing from the prompt")
    assert not problems, "\n".join(problems)
