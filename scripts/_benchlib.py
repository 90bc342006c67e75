"""Shared plumbing for ``scripts/bench`` and ``scripts/eval``: processes, HTTP timing, statistics, tables.

Both scripts compare oaiproxy with llama-server itself, so both need the same
pieces: a llama-server they start (optionally with ``--jinja`` and a chat
template), an oaiproxy in front of it (``--endpoint``, as a separate process,
the way a user runs it), an in-process :class:`~oaiproxy.engine.ChatEngine`
built the way the proxy builds its own (so "the same request" sent straight to
llama-server is exactly the body the proxy would send), and honest summaries
of noisy timings (p50/p95 over interleaved repeats). The processes are started
by :mod:`tests._processes`, the test suite's own helper, so both start them alike.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent
if str(REPO) not in sys.path:  # the process helpers live in tests/, shared with the suite
    sys.path.insert(0, str(REPO))

from tests._processes import Child, free_port, llama_server_command  # noqa: E402

if TYPE_CHECKING:  # imported where used: a script that only needs the statistics stays quick to start
    from oaiproxy.api.chat.protocol import ChatCompletionRequest
    from oaiproxy.api.chat.serving import ChatEngine

CASES_DIR = SCRIPTS / "eval_cases"


# ----------------------------------------------------------------------------- assets


def llama_models_dir() -> Path:
    """llama.cpp's ``models/`` folder (real chat templates), as ``make setup`` unpacks it."""
    path = Path(os.environ.get("OAIPROXY_LLAMA_MODELS", REPO / ".cache" / "llama-models"))
    if not (path / "templates").is_dir():
        raise SystemExit(f"llama.cpp chat templates missing at {path}/templates: run `make setup` first "
                         "(or set OAIPROXY_LLAMA_MODELS)")
    return path


def templates_dir() -> Path:
    return llama_models_dir() / "templates"


def default_model() -> Path:
    from oaiproxy.runtime.default_model import default_model_path

    return default_model_path()


def server_binary() -> Path:
    from oaiproxy.runtime.llama_server import find_server_binary

    return find_server_binary()


def oaiproxy_default_template() -> Path:
    """The template oaiproxy uses for models without one (so llama-server can be given the same)."""
    return REPO / "templates" / "default.jinja"


def model_has_template(model: Path) -> bool:
    from oaiproxy.runtime.gguf_meta import read_metadata

    return bool(read_metadata(model).chat_template)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# ----------------------------------------------------------------------------- processes


def stop_children_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so the ``with`` blocks stop the llama-server and proxy we started."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class _Process(Child):
    """A child of a script (see :class:`tests._processes.Child`): its log is removed when it stops.

    Subclasses set ``port`` and ``url``, then call :meth:`_spawn`, which returns once ``/health`` answers.
    """

    port: int
    url: str

    def _spawn(self, cmd: list[str], what: str, timeout: float, cwd: Path | None = None) -> None:
        self.what = what
        Child.__init__(self, cmd, port=self.port, cwd=cwd, keep_log=False, new_session=True)
        try:
            self.wait_healthy(timeout)
        except BaseException:  # Ctrl-C while waiting too
            self.stop()
            raise

    def __enter__(self) -> _Process:
        return self


class LlamaServer(_Process):
    """A llama-server on one model; ``jinja=True`` turns on its own chat templating and tool calling."""

    def __init__(self, model: Path, *, jinja: bool = False, template: Path | None = None, parallel: int = 2,
                 ctx_size: int = 4096, threads: int | None = None, extra: Sequence[str] = (),
                 timeout: float = 180):
        self.model, self.template, self.jinja = model, template, jinja
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = ["--jinja"] if jinja else []
        if template is not None:
            options += ["--chat-template-file", str(template)]
        self._spawn(llama_server_command(server_binary(), model, self.port, ctx_size=ctx_size, parallel=parallel,
                                         threads=threads, extra=[*options, *extra]), "llama-server", timeout)


class ProxyServer(_Process):
    """``python -m oaiproxy --endpoint URL``: the real proxy as a separate process, as users run it."""

    def __init__(self, endpoint: str, *, template: Path | None = None, args: Sequence[str] = (),
                 timeout: float = 120):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "oaiproxy", "--endpoint", endpoint, "--port", str(self.port),
               "--log-level", "warning", *args]
        if template is not None:
            cmd += ["--chat-template-file", str(template)]
        self._spawn(cmd, "oaiproxy", timeout, cwd=REPO)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 120) -> Any:
    """A blocking JSON request (for set-up steps; timed paths use aiohttp)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url} -> HTTP {e.code}: {e.read().decode(errors='replace')[:500]}") from None


# ----------------------------------------------------------------------------- the proxy's engine, in-process


async def build_engine(endpoint: str, template: Path | None = None, style: str | None = None) -> ChatEngine:
    """A :class:`ChatEngine` for a running llama-server, built as ``oaiproxy --endpoint`` builds it.

    Used to plan requests (``engine.plan(req)`` gives the exact ``/completion``
    body the proxy sends) without going through HTTP.
    """
    from oaiproxy.runtime.upstream import LlamaServerClient
    from oaiproxy.server import build_engine as engine_for
    from oaiproxy.server import resolve_model
    from oaiproxy.settings import Settings

    client = LlamaServerClient(endpoint)
    settings = Settings(endpoint=endpoint, chat_template_file=template, style=style)
    info, _ = await resolve_model(settings, client)
    return engine_for(settings, info, client)


def chat_request(body: dict[str, Any]) -> ChatCompletionRequest:
    from oaiproxy.api.chat.protocol import ChatCompletionRequest
    from oaiproxy.api.protocol import parse_request

    request: ChatCompletionRequest = parse_request(ChatCompletionRequest, body)
    return request


# ----------------------------------------------------------------------------- eval cases and tools


def load_yaml(path: Path) -> Any:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_tools() -> dict[str, dict[str, Any]]:
    """The tool library the eval cases draw from: name -> OpenAI function object."""
    tools = load_yaml(CASES_DIR / "tools.yaml")
    return {t["name"]: t for t in tools}


def many_tools(n: int) -> list[dict[str, Any]]:
    """``n`` distinct tools in the OpenAI request shape: the eval's library over and over, renamed
    (``get_weather_3``) and described apart, so no two tools share a name."""
    library = list(load_tools().values())
    return [{"type": "function", "function": {**t, "name": f"{t['name']}_{i // len(library)}",
                                              "description": f"{t.get('description', '')} (copy {i // len(library)})"}}
            for i, t in ((i, library[i % len(library)]) for i in range(n))]


def tool_schemas() -> list[tuple[str, dict[str, Any]]]:
    """Every tool's parameter schema: the schema-conversion corpus of ``scripts/bench``."""
    return [(name, t["parameters"]) for name, t in load_tools().items()]


# ----------------------------------------------------------------------------- statistics and output


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "mean": sum(values) / len(values) if values else math.nan}


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, also valid GitHub Markdown, so figures paste into the docs as printed."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(items: Sequence[str]) -> str:
        return "| " + " | ".join(s.ljust(w) for s, w in zip(items, widths, strict=False)) + " |"

    out = [f"### {title}", "", line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out) + "\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN becomes null), so any JSON reader accepts the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


@dataclass
class Timed:
    """One HTTP exchange: wall time, time to the first byte/chunk, what came back."""

    seconds: float
    status: int
    body: Any = None
    first_chunk: float = math.nan
    first_token: float = math.nan
    chunks: int = 0
