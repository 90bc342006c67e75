"""Claude Code and Codex CLI, unchanged, on the real proxy and the real default model (Gemma 3 270M base).

Set up as a user would (README, "Agent clients"): the npm packages `make setup` installs into .cache/agents,
the base URL pointed at the proxy, any key. Each runs one non-interactive turn (``claude -p``, ``codex exec``)
in an empty directory. Their requests are the large ones of real agents (Claude Code: ~11,000 prompt tokens,
20 tools, JSON Schemas written by zod), so this is also the test of grammar size and context. A recorder between
client and proxy keeps every exchange: each must be a 200, and every tool call the client was handed must name
one of that request's tools and validate against its schema.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests._processes import REPO, ProxyProcess
from tests.clients.recorder import Exchange, Recorder

pytestmark = pytest.mark.integration

BIN = REPO / ".cache" / "agents" / "node_modules" / ".bin"
#: the context per slot: Claude Code's first prompt is ~11,000 tokens; one slot keeps its prefix cached
PROXY_ARGS = ["--parallel", "1", "--ctx-size", "16384"]
#: a small model writes until its output budget ends; Claude Code's default budget is 32,000 tokens
OUTPUT_BUDGET = "400"
CLIENT_TIMEOUT = 600
#: tool rounds watched in a client without a turn limit
ROUNDS = 3
PROMPT = "List the files in this directory."
#: no sub-agents: an agent the model starts runs on after the main turn (and its --max-turns), so the process
#: would not exit; `ls` may run without a prompt for permission
CLAUDE_TOOL_ARGS = ["--disallowedTools", "Agent", "Workflow", "--allowedTools", "Bash(ls:*)"]


@pytest.fixture(scope="module")
def agent_proxy() -> Iterator[ProxyProcess]:
    p = ProxyProcess(PROXY_ARGS)
    yield p
    p.stop()


@pytest.fixture
def recorder(agent_proxy: ProxyProcess) -> Iterator[Recorder]:
    r = Recorder(agent_proxy.url)
    yield r
    r.close()


def _model_id(proxy: ProxyProcess) -> str:
    import urllib.request
    with urllib.request.urlopen(proxy.base_url + "/models", timeout=10) as resp:
        return str(json.load(resp)["data"][0]["id"])


def _client(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path} is missing: `make setup` installs the agent clients"
    return str(path)


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "CLAUDE_", "CODEX_"))}
    return subprocess.run(args, cwd=cwd, env={**clean, **env}, capture_output=True, text=True,
                          timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL)


def _check_call(tools: dict[str, dict[str, Any]], name: str, arguments: Any, where: str) -> None:
    assert name in tools, f"{where}: a call to {name!r}, which the request did not declare"
    schema = tools[name]
    jsonschema.validators.validator_for(schema)(schema).validate(arguments)


# ---------------------------------------------------------------- Claude Code (Anthropic Messages)


def messages_tool_uses(ex: Exchange) -> list[tuple[str, Any]]:
    """Each ``tool_use`` block of a Messages answer, streamed or not, as (name, input)."""
    if not ex.content_type.startswith("text/event-stream"):
        return [(b["name"], b["input"]) for b in ex.json()["content"] if b["type"] == "tool_use"]
    blocks: dict[int, dict[str, Any]] = {}
    for event in ex.sse():
        if event["type"] == "content_block_start" and event["content_block"]["type"] == "tool_use":
            blocks[event["index"]] = {"name": event["content_block"]["name"], "json": ""}
        elif event["type"] == "content_block_delta" and event["delta"]["type"] == "input_json_delta":
            blocks[event["index"]]["json"] += event["delta"]["partial_json"]
    return [(b["name"], json.loads(b["json"] or "{}")) for b in blocks.values()]


def test_claude_code_completes_a_turn(agent_proxy: ProxyProcess, recorder: Recorder, tmp_path: Path) -> None:
    model = _model_id(agent_proxy)
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("hello\n")
    done = _run([_client("claude"), "-p", PROMPT, "--model", model,
                 "--max-turns", "2", "--output-format", "json", *CLAUDE_TOOL_ARGS], work, {
        "HOME": str(tmp_path), "ANTHROPIC_BASE_URL": recorder.url, "ANTHROPIC_API_KEY": "sk-local",
        "ANTHROPIC_SMALL_FAST_MODEL": model, "CLAUDE_CODE_MAX_OUTPUT_TOKENS": OUTPUT_BUDGET,
        "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"})
    result = json.loads(done.stdout)
    calls = [(ex.path, ex.status, messages_tool_uses(ex) if ex.status == 200 else ex.body[:300])
             for ex in recorder.exchanges]
    print(json.dumps({k: result.get(k) for k in ("subtype", "terminal_reason", "num_turns", "usage")}), calls)
    turns = [ex for ex in recorder.exchanges if ex.path == "/v1/messages"]
    assert turns, recorder.exchanges
    assert [ex.status for ex in recorder.exchanges] == [200] * len(recorder.exchanges), calls
    assert result.get("api_error_status") is None and result["terminal_reason"] in ("completed", "max_turns"), result
    for i, ex in enumerate(turns):
        tools = {t["name"]: t["input_schema"] for t in ex.request.get("tools", [])}
        for name, arguments in messages_tool_uses(ex):
            _check_call(tools, name, arguments, f"request {i}")


# ---------------------------------------------------------------- Codex CLI (OpenAI Responses)

#: $CODEX_HOME/config.toml as the README gives it
CODEX_CONFIG = """\
model = "{model}"
model_provider = "local"
web_search = "disabled"
[model_providers.local]
name = "local"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "LOCAL_KEY"
"""


def _output_items(ex: Exchange) -> list[dict[str, Any]]:
    if ex.content_type.startswith("text/event-stream"):
        return [e["item"] for e in ex.sse() if e.get("type") == "response.output_item.done"]
    return list(ex.json()["output"])


def responses_function_calls(ex: Exchange) -> list[tuple[str, Any]]:
    """Each ``function_call`` output item of a Responses answer, streamed or not, as (name, arguments)."""
    return [(i["name"], json.loads(i["arguments"])) for i in _output_items(ex) if i["type"] == "function_call"]


def _call_ids(ex: Exchange) -> list[tuple[str]]:
    return [(i["call_id"],) for i in _output_items(ex) if i["type"] == "function_call"]


def test_codex_runs_tool_rounds(agent_proxy: ProxyProcess, recorder: Recorder, tmp_path: Path) -> None:
    """``codex exec`` has no turn limit, and on the 270M model it calls ``exec_command`` round after round
    (until the context is full, ~90 rounds). The test watches three rounds — each a 200, each call valid, each
    later request carrying the previous call's output back — then stops it (or sees it end by itself)."""
    model = _model_id(agent_proxy)
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(CODEX_CONFIG.format(model=model, base_url=recorder.url))
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("hello\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    log = tmp_path / "codex.log"
    with log.open("w") as err:  # its own session: `codex` is a node wrapper of the native program
        proc = subprocess.Popen([_client("codex"), "exec", "--skip-git-repo-check", PROMPT],
                                cwd=work, env={**clean, "HOME": str(tmp_path), "CODEX_HOME": str(home),
                                               "LOCAL_KEY": "sk-local"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        deadline = time.monotonic() + CLIENT_TIMEOUT
        try:
            while proc.poll() is None and time.monotonic() < deadline and \
                    sum(ex.path == "/v1/responses" for ex in recorder.exchanges) < ROUNDS:
                time.sleep(1)
            ended = proc.poll()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    stderr = log.read_text(errors="replace")
    turns = [ex for ex in recorder.exchanges if ex.path == "/v1/responses"]
    statuses = [(ex.path, ex.status, "" if ex.status == 200 else (ex.body[:300], ex.request))
                for ex in recorder.exchanges]
    assert all(ex.status == 200 for ex in recorder.exchanges), statuses
    assert ended == 0 or len(turns) >= ROUNDS, (ended, stderr[-3000:], statuses)
    call_ids: list[str] = []
    for i, ex in enumerate(turns):
        outputs = {item.get("call_id") for item in ex.request["input"] if item.get("type") == "function_call_output"}
        assert set(call_ids) <= outputs, f"request {i} did not carry back the outputs of {call_ids}"
        tools = {t["name"]: t["parameters"] for t in ex.request.get("tools", []) if t.get("type") == "function"}
        calls = responses_function_calls(ex)
        for name, arguments in calls:
            _check_call(tools, name, arguments, f"request {i}")
        call_ids = [cid for cid, in _call_ids(ex)]
