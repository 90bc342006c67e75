"""``reasoning_effort`` reaches each template in the words it knows: Hunyuan 3 raises on OpenAI's ``none``."""

from __future__ import annotations

import pytest

from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.dialects import detect_style
from oaiproxy.templating.chat_template import ChatTemplate

TOOL = ToolSpec("f", "d", {"type": "object", "properties": {}})


@pytest.mark.parametrize("effort, thinks", [("none", False), ("minimal", True), ("medium", True), ("high", True)])
def test_hunyuan3_gets_its_own_words(templates_dir, effort: str, thinks: bool) -> None:
    source = (templates_dir / "tencent-Hy3.jinja").read_text(encoding="utf-8")
    style = detect_style(source)(ChatTemplate(source, bos_token="", eos_token="", name="hy3"))
    plan = style.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=[TOOL],
                                   tool_choice="required", reasoning_effort=effort))
    closed = plan.prompt.endswith("</think:opensource>")
    assert closed != thinks, plan.prompt[-80:]
