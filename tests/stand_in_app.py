"""The chat engine the stand-in tests build the real app on: the Qwen2.5 template and the Hermes dialect,
in front of a scripted llama-server (whose ``<tool_call>`` texts the tests write)."""

from __future__ import annotations

from pathlib import Path

from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.dialects import get_style
from oaiproxy.engine import Engine
from oaiproxy.runtime.upstream import LlamaServerClient
from oaiproxy.settings import Settings
from oaiproxy.templating.chat_template import ChatTemplate

TEMPLATE = "Qwen-Qwen2.5-7B-Instruct.jinja"


def hermes_engine(templates_dir: Path, upstream: LlamaServerClient, model_id: str,
                  settings: Settings | None = None) -> ChatEngine:
    path = templates_dir / TEMPLATE
    tpl = ChatTemplate(path.read_text(encoding="utf-8"), bos_token="", eos_token="<|im_end|>", name=path.name)
    return ChatEngine(Engine.from_settings(settings or Settings(), template=tpl, style=get_style("hermes"),
                                           client=upstream, model_id=model_id))
