"""``oaiproxy`` / ``python -m oaiproxy``: serve an OpenAI-compatible API in front of llama-server.

The options are not declared here: the typer command is generated from the fields of
:class:`oaiproxy.settings.Settings` (name, help text, default shown in ``--help``), so every
setting is an option, an ``OAIPROXY_<NAME>`` variable and a ``--config`` YAML key at once.
Typer only collects what the command line gave; pydantic-settings validates it and merges
it over the environment, the YAML file and the defaults. Arguments after ``--`` go to
llama-server as they are.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
import typing
from typing import Any

import typer
from pydantic.fields import FieldInfo

from oaiproxy.metrics import configure_logging
from oaiproxy.runtime.default_model import DefaultModelError
from oaiproxy.runtime.gguf_meta import GGUFError
from oaiproxy.runtime.llama_server import ServerNotFoundError, ServerStartError
from oaiproxy.settings import (
    PASSTHROUGH_FIELD,
    ConfigError,
    Settings,
    build_settings,
    env_name,
    option_name,
)

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _value_type(annotation: Any) -> Any:
    """The field's type without ``| None``: ``int | None`` -> ``int``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _option(name: str, field: FieldInfo) -> inspect.Parameter:
    """The typer option for one setting.

    Values reach :func:`serve` as typed on the command line (strings, a tuple for a list, a bool for
    a flag) and are converted and checked by the field itself, whatever source they come from, so a
    bad value gets the same message from the command line, the environment and the YAML file. The
    click default stays None (only command-line values are used); ``--help`` shows the field's.
    """
    kind = _value_type(field.annotation)
    flag = option_name(name)
    default = field.get_default(call_default_factory=True)
    extra = [f"env var: {env_name(name)}"]
    if kind is bool:
        decls = [f"{flag}/--no-{flag[2:]}"]
        annotation: Any = bool | None
        extra.append(f"default: {flag[2:] if default else 'no-' + flag[2:]}")
        metavar = None
    else:
        decls = [flag]
        annotation = list[str] | None if typing.get_origin(kind) is list else str | None
        if default not in (None, []):
            extra.append(f"default: {default}")
        # as typer shows a typed option: <int>, <path>, <list[str]>; a field may name its own
        # (``json_schema_extra={"metavar": ...}``) where its type is not what the command line takes
        extra_schema = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        own = extra_schema.get("metavar")
        metavar = own if isinstance(own, str) else \
            f"<{kind.__name__.lower() if isinstance(kind, type) else kind}>"
    info = typer.Option(None, *decls, help=f"{field.description or ''}  [{'; '.join(extra)}]",
                        show_default=False, metavar=metavar)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def serve(ctx: typer.Context, **options: Any) -> None:
    """Serve an OpenAI-compatible API (chat completions with reliable tool calls) for a GGUF model.

    Extra llama-server arguments go after `--`, e.g. `oaiproxy --model m.gguf -- --mlock`.
    """
    given = {name: value for name, value in options.items() if _on_command_line(ctx, name)}
    try:
        settings = build_settings(given)
        if ctx.args:  # after the ones from the environment or the YAML file
            settings = build_settings({**given, PASSTHROUGH_FIELD: [*settings.server_args, *ctx.args]})
    except ConfigError as exc:
        _fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    if settings.log_level != "debug":
        logging.getLogger("oaiproxy.llama_server.output").setLevel(logging.INFO + 1)
    try:
        asyncio.run(_serve(settings))
    except (ConfigError, ServerNotFoundError, ServerStartError, GGUFError, DefaultModelError, OSError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass


# typer reads a command's options from its signature: give serve one parameter per setting.
serve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    + [_option(name, field) for name, field in Settings.model_fields.items() if name != PASSTHROUGH_FIELD],
    return_annotation=None)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})(serve)


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the command line gave this option (the environment and the YAML file are read by Settings).

    By the source's name: typer ships its own copy of click, whose ParameterSource is not click's.
    """
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


async def _serve(settings: Settings) -> None:
    from oaiproxy.server import serve_forever  # imported late: keeps --help fast

    await serve_forever(settings)


def _fail(message: str) -> typing.NoReturn:
    typer.echo(f"oaiproxy: error: {message}", err=True)
    raise typer.Exit(2)


def main() -> None:
    app()
