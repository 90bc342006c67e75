"""Conversations and tools shared by the chat-template tests, in the shape OpenAI clients send.

Tool-call ids are nine alphanumerics because Mistral's templates refuse anything else.
"""

from __future__ import annotations

import copy
from typing import Any

SYSTEM = "You are terse."
FIRST_USER = "Weather in Paris?"
LAST_USER = "Thanks, and Rome?"
TOOL_RESULT = '{"temp_c": 21}'
ANSWER = "It is 21 C in Paris."

CALL = {
    "id": "call00001",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
}

TOOLS: list[dict[str, Any]] = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"},
            },
            "required": ["city"],
        },
    },
}]


def tool_conversation() -> list[dict[str, Any]]:
    """system, user, assistant calling a tool (content null), tool result, user."""
    return copy.deepcopy([
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": FIRST_USER},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": CALL["id"], "content": TOOL_RESULT},
        {"role": "user", "content": LAST_USER},
    ])


def answered_tool_conversation() -> list[dict[str, Any]]:
    """The same with the assistant's answer after the tool result, so user/assistant still
    alternate once tool turns are set aside (what Mistral-style templates demand)."""
    messages = tool_conversation()
    messages.insert(4, {"role": "assistant", "content": ANSWER})
    return messages


def plain_conversation() -> list[dict[str, Any]]:
    """user, assistant, user: the one shape every chat template accepts."""
    return [
        {"role": "user", "content": FIRST_USER},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": LAST_USER},
    ]
