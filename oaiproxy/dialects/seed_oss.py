"""ByteDance Seed-OSS: ``<seed:tool_call>`` with ``<function=NAME>`` and ``<parameter=KEY>VALUE</parameter>``.

Qwen3-Coder's element names in Seed's own tags, without the newlines around
the values::

    <seed:tool_call>
    <function=get_weather>
    <parameter=city>Paris</parameter>
    </function>
    </seed:tool_call>

One call per block, blocks one per line. The template writes a value with
``| string``: a string raw, a number as JSON, but a boolean, ``None``, an object
or a list in Python's spelling (``True``, ``{'a': 1}``). The grammar writes
JSON for every value that is not a string (as every other XML dialect does);
the parser reads Python's spelling too. Grammar and parser are the shared ones
of :mod:`oaiproxy.dialects.xml_invoke`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from oaiproxy.conversation.model import Conversation
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import SampleOutput
from oaiproxy.dialects.xml_invoke import XmlCallsStyle, XmlFormat

SEED = XmlFormat(
    dialect="seed-oss", section_open="<seed:tool_call>\n", section_close="</seed:tool_call>",
    one_call_per_section=True, section_sep="\n", call_open="<function=", call_name_end=">\n",
    call_close="</function>\n", param_open="<parameter=", param_name_end=">", value_end="</parameter>",
    param_tail="\n", python_values=True)


@register(detect_priority=66)
class SeedOssStyle(XmlCallsStyle):
    """Asked before qwen3-coder: a Seed-OSS template also says ``<function=`` and ``<parameter=``."""

    name = "seed-oss"
    rule_prefix = "seed"
    fmt = SEED
    special_tokens = SEED.special_tokens
    fallback_prompt = "tools-seed-oss.jinja"
    samples = SEED.samples(
        templates=("ByteDance-Seed-OSS.jinja",),
        call_tokens=64,
        outputs=(
            SampleOutput("I will check.\n<seed:tool_call>\n<function=get_weather>\n<parameter=city>Paris</parameter>"
                         "\n</function>\n</seed:tool_call>", "I will check.\n", (("get_weather", {"city": "Paris"}),)),
            SampleOutput("<seed:tool_call>\n<function=f>\n<parameter=a>x < y</parameter>\n<parameter=b>2</parameter>"
                         "\n<parameter=c>{'k': [True, None]}</parameter>\n</function>\n</seed:tool_call>\n"
                         "<seed:tool_call>\n<function=g>\n</function>\n</seed:tool_call>", "",
                         (("f", {"a": "x < y", "b": 2, "c": {"k": [True, None]}}), ("g", {}))),
            SampleOutput("<seed:tool_call> is followed by no function at all",
                         "<seed:tool_call> is followed by no function at all"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "<seed:tool_call>" in template_source and "<function=" in template_source

    def build_prompt(self, conversation: Conversation, tools: ToolPlan, schema: dict[str, Any] | None) -> str:
        """The template lists each tool's ``parameters.properties`` and fails on a tool without them: it gets
        an empty ``properties`` (the same schema) instead."""
        shown = tuple(spec if "properties" in spec.parameters
                      else dataclasses.replace(spec, parameters={**spec.parameters, "properties": {}})
                      for spec in tools.prompt_tools)
        return super().build_prompt(conversation, dataclasses.replace(tools, prompt_tools=shown), schema)


__all__ = ["SEED", "SeedOssStyle"]
