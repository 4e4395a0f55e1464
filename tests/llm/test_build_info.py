"""doctor's check of the llama.cpp build: the CPU features it uses against this CPU's, and a
probe in a child process that loads the model (bot/llm/build_info.py)."""

from __future__ import annotations

import pytest

from bot.adapter import Finding
from bot.llm.build_info import BuildReport, findings, parse_features, probe
from bot.llm.llama_cpp import bundled_model_path

PORTABLE = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
# A -march=native build on Sapphire Rapids, as the machine had it.
SAPPHIRE_NATIVE = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
    "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "
    "AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
ZEN2 = {"pni", "ssse3", "avx", "avx2", "f16c", "fma", "bmi2"}
SAPPHIRE = ZEN2 | {"avx_vnni", "avx512f", "avx512vbmi", "avx512_vnni", "avx512_bf16"}
SAPPHIRE |= {"amx_tile", "amx_int8", "amx_bf16"}


def report(system_info: str, crash: str | None = None) -> BuildReport:
    return BuildReport(system_info, crash=crash, features=parse_features(system_info))


def lines(found: list[Finding]) -> list[tuple[str, str]]:
    return [(f.level, f.what) for f in found]


@pytest.mark.unit
def test_features_come_from_the_cpu_part_of_the_system_info() -> None:
    cuda_first = "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | " + PORTABLE
    features = parse_features(cuda_first)
    assert features["AVX2"] == "1" and "ARCHS" not in features and "USE_GRAPHS" not in features


@pytest.mark.unit
def test_a_portable_build_on_an_avx512_cpu_is_fine_and_says_what_native_would_add() -> None:
    found = findings(report(PORTABLE), SAPPHIRE - {"amx_int8"}, plans_gpu=False)
    assert [f.level for f in found] == ["ok", "ok"]
    assert "AVX512, AVX512_VBMI" in found[1].detail and "LLAMA_BUILD=native" in found[1].detail


@pytest.mark.unit
def test_an_amx_build_fails_with_the_way_to_a_portable_one() -> None:
    found = findings(report(SAPPHIRE_NATIVE), SAPPHIRE, plans_gpu=False)
    assert ("fail", "llama.cpp build uses AMX (this CPU has it)") in lines(found)
    amx = next(f for f in found if "AMX" in f.what)
    assert "llama.cpp#20824" in amx.detail and "LLAMA_BUILD=portable" in amx.detail


@pytest.mark.unit
def test_a_build_for_a_newer_cpu_fails_before_it_dies_of_sigill() -> None:
    found = findings(report(SAPPHIRE_NATIVE), ZEN2, plans_gpu=False)
    missing = next(f for f in found if "lacks" in f.what and "AMX" not in f.what)
    assert missing.level == "fail" and missing.what.startswith("llama.cpp build uses AVX_VNNI, ")
    assert "SIGILL" in missing.detail


@pytest.mark.unit
def test_a_probe_that_died_and_a_gpu_plan_without_gpu_support_are_reported() -> None:
    died = findings(report(PORTABLE, crash="SIGSEGV while running the model"), ZEN2, True)
    assert ("fail", "llama.cpp build: the probe died (SIGSEGV while running the model)") in (
        lines(died)
    )
    assert ("warn", "GPU offload") in lines(died)
    assert "LLAMA_BUILD=cuda" in next(f for f in died if f.what == "GPU offload").detail


@pytest.mark.integration
def test_the_installed_build_runs_the_bundled_model_in_the_probe() -> None:
    found = probe(bundled_model_path(), {"n_ctx": 256, "n_threads": 1}, timeout=120)
    assert found.model_ran and found.crash is None and found.error is None
    assert found.features["AVX2"] == "1"
    assert found.features.get("AMX_INT8") != "1"  # the Makefile's builds never use AMX
