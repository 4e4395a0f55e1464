"""The Makefile's llama.cpp builds (README, "llama.cpp builds"): which flags each one passes to
pip and CMake, read with `make print-llama-build`, without building anything."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def build(name: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CMAKE_ARGS", "CFLAGS", "CXXFLAGS")}
    choice = [] if name is None else [f"LLAMA_BUILD={name}"]
    return subprocess.run(
        ["make", "-s", "print-llama-build", *choice],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )


def flags(name: str | None) -> dict[str, str]:
    done = build(name)
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


@pytest.fixture(autouse=True)
def needs_make() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")


def test_the_default_build_is_portable_and_cacheable() -> None:
    portable = flags("portable")
    assert flags(None) == portable
    cmake = portable["CMAKE_ARGS"].split()
    assert "-DGGML_NATIVE=OFF" in cmake and "-DGGML_AVX2=ON" in cmake
    assert portable["PIP_FLAGS"] == ""  # pip's cached wheel is right for any machine


def test_native_uses_the_whole_cpu_but_never_amx_and_skips_the_wheel_cache() -> None:
    native = flags("native")
    assert "-DGGML_NATIVE=ON" in native["CMAKE_ARGS"].split()
    assert native["CXXFLAGS"].split()[-3:] == NO_AMX.split()
    assert native["PIP_FLAGS"] == "--no-cache-dir"


def test_cuda_adds_the_gpu_to_the_portable_cpu_part() -> None:
    cuda = flags("cuda")
    cmake = cuda["CMAKE_ARGS"].split()
    assert "-DGGML_CUDA=ON" in cmake and "-DGGML_NATIVE=OFF" in cmake
    assert cuda["PIP_FLAGS"] == "--no-cache-dir"


@pytest.mark.parametrize("name", ["portable", "native", "cuda"])
def test_every_build_skips_what_the_bot_never_uses_and_builds_no_cpu_variants(name: str) -> None:
    cmake = flags(name)["CMAKE_ARGS"]
    assert "-DLLAMA_BUILD_SERVER=OFF" in cmake and "-DLLAVA_BUILD=OFF" in cmake
    # One CPU backend per build: the all-variants build includes an AMX one.
    assert "ALL_VARIANTS" not in cmake and "BACKEND_DL" not in cmake and "AMX=ON" not in cmake


def test_an_unknown_build_is_refused() -> None:
    done = build("fast")
    assert done.returncode != 0
    assert "LLAMA_BUILD must be portable, native or cuda, not 'fast'" in done.stderr
