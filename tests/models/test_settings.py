"""The options of several models: ``--model`` repeated, ``--models-dir``, a ``--config`` file's ``model:`` list
with per-model options, ``--max-loaded``; a bad combination is refused at start-up (exit 2) naming the option.
Driven through the real typer app, with the server start replaced by a recorder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oaiproxy import cli
from oaiproxy.settings import ModelEntry, Settings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OAIPROXY_"):
            monkeypatch.delenv(name)
    yield


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, Settings | None]:
    seen: list[Settings] = []

    async def record(settings: Settings) -> None:
        seen.append(settings)

    monkeypatch.setattr(cli, "_serve", record)
    result = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output, seen[0] if seen else None


def ids(settings: Settings) -> list[str]:
    return [settings.model_id(e) for e in settings.model_entries()]


def test_model_repeated_declares_each_under_its_file_name(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, s = run(monkeypatch, "--model", "/m/qwen.gguf", "--model", "/m/gemma.gguf", "--max-loaded", "2")
    assert code == 0 and s is not None, out
    assert [e.path for e in s.model] == [Path("/m/qwen.gguf"), Path("/m/gemma.gguf")]
    assert ids(s) == ["qwen", "gemma"] and s.max_loaded == 2
    # one model, as before: --alias names it
    code, out, s = run(monkeypatch, "--model", "/m/qwen.gguf", "--alias", "q")
    assert code == 0 and s is not None and ids(s) == ["q"]
    # nothing: the default model, and one loaded at a time by default
    code, out, s = run(monkeypatch)
    assert code == 0 and s is not None and s.model == [] and s.model_entries() == [] and s.max_loaded == 1


def test_models_dir_declares_every_gguf_there(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("b.gguf", "a.gguf", "mmproj-a-f16.gguf", "big-00001-of-00002.gguf", "big-00002-of-00002.gguf",
                 "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    code, out, s = run(monkeypatch, "--models-dir", str(tmp_path), "--model", "/m/qwen.gguf")
    assert code == 0 and s is not None, out
    assert ids(s) == ["qwen", "a", "b", "big"]
    assert s.model_entries()[3].path == tmp_path / "big-00001-of-00002.gguf"


def test_a_config_model_list_gives_each_model_its_own_options(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ctx-size: 4096\nstyle: hermes\nmax-loaded: 2\nmodel:\n"
                   "  - /m/qwen.gguf\n"
                   "  - path: /m/qwen.gguf\n    alias: qwen-small\n    ctx-size: 1024\n    style: generic\n"
                   "    chat-template-file: /t/x.jinja\n    threads: 1\n    server_args: ['--mlock']\n")
    code, out, s = run(monkeypatch, "--config", str(cfg))
    assert code == 0 and s is not None, out
    assert ids(s) == ["qwen", "qwen-small"]
    first, second = (s.for_model(e) for e in s.model_entries())
    assert (first.alias, first.ctx_size, first.style, first.chat_template_file, first.threads) == (
        "qwen", 4096, "hermes", None, None)
    assert (second.alias, second.ctx_size, second.style, second.chat_template_file, second.threads,
            second.server_args) == ("qwen-small", 1024, "generic", Path("/t/x.jinja"), 1, ["--mlock"])
    assert second.model == [ModelEntry(path=Path("/m/qwen.gguf"), alias="qwen-small", ctx_size=1024, style="generic",
                                       chat_template_file=Path("/t/x.jinja"), threads=1, server_args=["--mlock"])]
    assert s.ctx_size == 4096  # the proxy's own settings are left as they were
    cfg.write_text("model: [~/m/a.gguf, {path: ~/m/b.gguf, chat-template-file: ~/t.jinja}]\n")
    code, out, s = run(monkeypatch, "--config", str(cfg))
    assert code == 0 and s is not None, out
    assert [e.path for e in s.model] == [Path.home() / "m/a.gguf", Path.home() / "m/b.gguf"]
    assert s.model[1].chat_template_file == Path.home() / "t.jinja"


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "/m/a.gguf", "--model", "/n/a.gguf"],
     "--model: two models have the id 'a' (/m/a.gguf and /n/a.gguf)"),
    (["--model", "/m/a.gguf", "--model", "/m/b.gguf", "--alias", "x"], "--alias names the one model"),
    (["--model", "/m/a.gguf", "--model", "/m/b.gguf", "--endpoint", "http://127.0.0.1:1"],
     "several models (--model repeated, --models-dir) with --endpoint is not supported"),
    (["--model", "/m/a.gguf", "--model", "/m/b.gguf", "--replicas", "2"],
     "several models (--model repeated, --models-dir) with --replicas is not supported"),
    (["--max-loaded", "0"], "--max-loaded: Input should be greater than or equal to 1"),
    (["--models-dir", "/no/such/folder"], "--models-dir: /no/such/folder is not a folder"),
])
def test_a_bad_combination_is_refused_naming_the_option(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                        message: str) -> None:
    code, out, s = run(monkeypatch, *args)
    assert code == 2 and s is None
    assert out.startswith("oaiproxy: error: ") and message in " ".join(out.split()), out


def test_an_empty_models_dir_and_a_bad_config_entry_are_refused(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    code, out, _ = run(monkeypatch, "--models-dir", str(tmp_path))
    assert code == 2 and f"--models-dir: no .gguf file in {tmp_path}" in out
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  - path: /m/a.gguf\n    ctx: 1024\n")
    code, out, _ = run(monkeypatch, "--config", str(cfg))
    assert code == 2 and "--model[0].ctx: Extra inputs are not permitted" in out, out
    cfg.write_text("model:\n  - path: /m/a.gguf\n    ctx-size: 10\n")
    code, out, _ = run(monkeypatch, "--config", str(cfg))
    assert code == 2 and "--model[0].ctx-size: Input should be greater than or equal to 256" in out, out
