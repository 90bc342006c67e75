"""Our rendering against a peer: llama-server's own Jinja engine (`/apply-template`) started with
the same template file must produce the very same prompt for the same messages and tools.

llama-server adds a few inputs of its own, which we pass as extra context so the comparison is
like for like: `date_string` ("%d %b %Y") and `datetime` ("%b %d %Y") for today, and
`enable_thinking=True` (its default for templates it thinks can reason). It also drops a leading
BOS from the rendered prompt when the model adds one at tokenisation (Gemma 3 does), so we do the
same here. (Templates that print `strftime_now`'s date could differ if run across midnight.)

All 71 llama.cpp templates were compared by hand once (see docs/chat-templates.md); 67 agree on
both conversations. Not compared here, because llama.cpp preprocesses their input itself:
* google-gemma-4-31B-it-interleaved: llama.cpp rewrites tool messages into the assistant turn
  for this older Gemma 4 template (`convert_tool_responses_gemma4`).
* DeepSeek V4 (and V4 Flash): its dedicated handler rebuilds the messages before rendering.
* Apertus: llama-server passes enable_thinking=false for it (no thinking support detected).
* templates without a system role (Gemma 2): llama.cpp silently merges the system message into
  the first user turn; we raise a TemplateError and leave the choice to the dialect, which
  knows `supports_system_role`. Gemma 2 is compared on a conversation without system message.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from oaiproxy.dialects.registry import sampled_styles
from oaiproxy.runtime.gguf_meta import read_metadata
from oaiproxy.templating.chat_template import ChatTemplate
from tests._processes import LlamaServer
from tests.templates import samples

pytestmark = pytest.mark.integration

# The dialect templates (as each dialect declares them in its samples), then a spread of others that
# exercise the less common paths: list.append (Kimi), str + undefined (Command R+), llama.cpp's
# `datetime`/`functions` (FireFunction), tojson of a generator (llama.cpp's DeepSeek R1), strftime_now
# (gpt-oss), XML arguments (Qwen3-Coder).
OTHERS = [
    "google-gemma-2-2b-it.jinja",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "Kimi-K2-Instruct.jinja",
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja",
    "fireworks-ai-llama-3-firefunction-v2.jinja",
    "llama-cpp-deepseek-r1.jinja",
    "deepseek-ai-DeepSeek-V3.1.jinja",
    "openai-gpt-oss-120b.jinja",
    "Qwen3-Coder.jinja",
]
#: the templates whose input llama.cpp preprocesses itself (see the module docstring): not comparable
PREPROCESSED = {"google-gemma-4-31B-it-interleaved.jinja", "deepseek-ai-DeepSeek-V4.jinja",
                "deepseek-ai-DeepSeek-V4-Flash-0731.jinja", "Apertus-8B-Instruct.jinja"}
COMPARED = [t for t in dict.fromkeys(
    [t for cls in sampled_styles() if cls.samples is not None for t in cls.samples.templates if t != "default"]
    + OTHERS) if t not in PREPROCESSED]
NO_SYSTEM_ROLE = {"google-gemma-2-2b-it.jinja"}


# llama-server options that only speed up start-up: /apply-template never touches the model.
FAST_START = ["--no-warmup", "-c", "512", "-np", "1"]
PARALLEL_SERVERS = 4


@pytest.fixture(scope="module")
def model_tokens(default_model_path: Path):
    meta = read_metadata(default_model_path)
    return meta.bos_token, meta.eos_token, bool(meta.add_bos_token)


def conversations(name: str) -> dict[str, tuple[list[dict], list[dict] | None]]:
    if name in NO_SYSTEM_ROLE:
        return {"plain chat": (samples.plain_conversation(), None)}
    return {
        "tool conversation": (samples.answered_tool_conversation(), samples.TOOLS),
        "plain chat": (samples.plain_conversation(), None),
    }


def _their_prompts(binary: str, model: Path, template: Path) -> dict[str, str]:
    server = LlamaServer(binary, model, extra=["--jinja", "--chat-template-file", str(template), *FAST_START])
    try:
        prompts = {}
        for label, (messages, tools) in conversations(template.name).items():
            body: dict = {"messages": messages}
            if tools:
                body["tools"] = tools
            prompts[label] = server.post("/apply-template", body)["prompt"]
        return prompts
    finally:
        server.stop()


@pytest.fixture(scope="module")
def peer_prompts(templates_dir, llama_server_bin, default_model_path) -> dict[str, dict[str, str] | Exception]:
    """One llama-server per template (a few at a time: start-up is mostly waiting), asked for
    every conversation; a failure is kept and reported by that template's test."""
    results: dict[str, dict[str, str] | Exception] = {}

    def run(name: str) -> None:
        try:
            results[name] = _their_prompts(llama_server_bin, default_model_path, templates_dir / name)
        except Exception as e:  # noqa: BLE001 - reported per template below
            results[name] = e

    missing = [n for n in COMPARED if not (templates_dir / n).is_file()]
    if missing:
        pytest.fail(f"real templates missing from the llama.cpp assets: {missing}")
    with ThreadPoolExecutor(PARALLEL_SERVERS) as pool:
        list(pool.map(run, COMPARED))
    return results


@pytest.mark.parametrize("name", COMPARED)
def test_same_prompt_as_llama_server(name, templates_dir, peer_prompts, model_tokens):
    theirs = peer_prompts[name]
    if isinstance(theirs, Exception):
        pytest.fail(f"llama-server could not render {name}: {theirs}")
    bos, eos, adds_bos = model_tokens
    template = ChatTemplate((templates_dir / name).read_text(encoding="utf-8"), bos_token=bos, eos_token=eos,
                            name=name)
    for label, (messages, tools) in conversations(name).items():
        ours = template.render(messages, tools=tools, date_string=time.strftime("%d %b %Y"),
                               datetime=time.strftime("%b %d %Y"), enable_thinking=True)
        if adds_bos and bos and ours.startswith(bos):
            ours = ours[len(bos):]
        assert ours == theirs[label], f"{name}, {label}: prompts differ"
