"""The GGUF planner on synthetic files that declare real models' shapes (Qwen2.5 1.5B-32B)."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from bot.llm.gguf_info import GGUFError, GGUFInfo
from bot.llm.planner import (
    GIB,
    MIB,
    QWEN25,
    Tier,
    _memory,
    _Option,
    plan_for_file,
    plan_model,
    usable_gpu_bytes,
)
from bot.llm.tiers import TIERS, parse_tier
from tests.llm.gguf_factory import write_gguf

pytestmark = pytest.mark.unit

RAM = 64 * GIB  # plans below assume a roomy host unless a test says otherwise


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GGUFInfo]:
    folder = tmp_path_factory.mktemp("gguf")
    return {
        size: GGUFInfo.read(write_gguf(folder / f"qwen2.5-{size}-q4_k_m.gguf", shape))
        for size, shape in QWEN25.items()
    }


# -- the arithmetic of published model shapes --------------------------------------------------


@pytest.mark.parametrize("size", list(QWEN25))
def test_declared_weights_match_the_published_models(
    models: dict[str, GGUFInfo], size: str
) -> None:
    info, shape = models[size], QWEN25[size]
    # Parameter counts as the model cards state them (32B: 32.5B without, 32.8B with embeddings).
    assert info.n_params / 1e9 == pytest.approx(shape.published_params, rel=0.015)
    # Q4_K_M file sizes of the published GGUF builds.
    assert info.file_size / 1e9 == pytest.approx(shape.published_q4_k_m_gb, rel=0.015)
    assert info.file_type == "Q4_K_M"
    # ... yet the sparse file takes next to no disk.
    assert info.path.stat().st_blocks * 512 < 1024 * 1024


@pytest.mark.parametrize(
    ("size", "bytes_per_token"),
    [("1.5B", 28 * 1024), ("7B", 56 * 1024), ("14B", 192 * 1024), ("32B", 256 * 1024)],
)
def test_kv_cache_per_token_is_layers_x_kv_heads_x_head_dim(
    models: dict[str, GGUFInfo], size: str, bytes_per_token: int
) -> None:
    info = models[size]
    f16 = gguf.GGMLQuantizationType.F16
    assert sum(info.kv_bytes_per_token(f16, f16)) == bytes_per_token
    assert QWEN25[size].kv_bytes_per_token_f16() == bytes_per_token


def test_kv_cache_matches_what_llama_cpp_reports_for_qwen25_7b(
    models: dict[str, GGUFInfo],
) -> None:
    # llama.cpp: "KV self size = 112.00 MiB, K (f16): 56.00 MiB, V (f16): 56.00 MiB" at n_ctx
    # 2048, and 1792 MiB at 32768.
    for n_ctx, mib in [(2048, 112), (32768, 1792)]:
        memory = _memory(models["7B"], _Option(29, n_ctx, "f16", 512, True))
        assert memory.kv_gpu == mib * MIB
    q8 = _memory(models["7B"], _Option(29, 32768, "q8_0", 512, True))
    assert q8.kv_gpu == 1792 * MIB * 34 // 64  # 34 bytes per 32 values instead of 64


def test_reader_agrees_with_gguf_package(models: dict[str, GGUFInfo]) -> None:
    info = models["1.5B"]
    reader = gguf.GGUFReader(str(info.path))
    assert [(t.name, t.n_bytes) for t in reader.tensors] == [
        (t.name, t.n_bytes) for t in info.tensors
    ]
    assert reader.fields["qwen2.block_count"].contents() == info.block_count == 28
    assert info.head_count == 12 and info.kv_head_counts == [2] * 28
    assert info.key_length == 128 and info.context_length == 32768
    assert info.vocab_size == 151936  # from the embedding shape: no vocabulary written


def test_reader_skips_a_full_vocabulary(tmp_path: Path) -> None:
    info = GGUFInfo.read(write_gguf(tmp_path / "v.gguf", QWEN25["1.5B"], with_vocab=True))
    assert info.vocab_size == 151936
    assert isinstance(info.chat_template, str)


# -- tier decisions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "tier", "status", "n_ctx", "kv"),
    [
        ("1.5B", "cpu", "cpu", 4096, "f16"),
        ("3B", "4gb", "fits", 8192, "f16"),
        ("7B", "20gb", "fits", 32768, "f16"),
        ("14B", "20gb", "fits", 32768, "f16"),
        ("32B", "40gb", "fits", 32768, "f16"),
    ],
)
def test_recommended_models_fit_their_tier(
    models: dict[str, GGUFInfo], size: str, tier: str, status: str, n_ctx: int, kv: str
) -> None:
    plan = plan_model(models[size], parse_tier(tier), ram_usable=RAM)
    assert (plan.status, plan.n_ctx, plan.kv_type) == (status, n_ctx, kv)
    assert plan.memory.gpu <= plan.gpu_usable
    if status == "fits":
        assert plan.n_gpu_layers == models[size].block_count + 1
        assert plan.flash_attn and plan.advice == ()
    if size != "7B":  # 7B is an alternative on 20 GB; the recommendation is the 14B
        assert QWEN25[size].name in TIERS[tier].recommended


def test_7b_on_4gb_offloads_part_and_says_what_would_fit(models: dict[str, GGUFInfo]) -> None:
    plan = plan_model(models["7B"], TIERS["4gb"], ram_usable=RAM)
    assert plan.status == "partial"
    assert 0 < plan.n_gpu_layers < 28
    assert plan.memory.gpu <= plan.gpu_usable
    assert any("blocks on the GPU" in reason for reason in plan.reasons)
    assert any(item.startswith("a model sized for this tier: Qwen2.5-3B") for item in plan.advice)
    assert any(item.startswith("more GPU memory") for item in plan.advice)


def test_32b_on_20gb_does_not_fit_whole_and_suggests_a_smaller_quant(
    models: dict[str, GGUFInfo],
) -> None:
    plan = plan_model(models["32B"], TIERS["20gb"], ram_usable=RAM)
    # Only with a 4096-token q4_0 cache, if at all: not the 32k the tier is for.
    assert plan.n_ctx <= 4096 or plan.status == "partial"
    assert any("Q3_K_M" in item for item in plan.advice)


def test_kv_cache_is_quantized_before_the_context_is_cut(models: dict[str, GGUFInfo]) -> None:
    # 14B Q4_K_M at 32k: 14.3 GiB with f16 KV, 11.2 GiB with q8_0; 15 GiB leaves 13.75 usable.
    plan = plan_model(models["14B"], parse_tier("15gb"), ram_usable=RAM)
    assert (plan.status, plan.kv_type, plan.n_ctx) == ("fits", "q8_0", 32768)
    assert any("f16 KV at 32768 tokens would need" in reason for reason in plan.reasons)


def test_boundary_one_byte_decides(models: dict[str, GGUFInfo]) -> None:
    info = models["7B"]
    tier = Tier("test", 8, 8192, "-")
    need = _memory(info, _Option(29, 8192, "f16", 512, True)).gpu
    exact = plan_model(info, tier, gpu_usable=need, ram_usable=RAM)
    assert (exact.status, exact.kv_type, exact.n_ctx) == ("fits", "f16", 8192)
    short = plan_model(info, tier, gpu_usable=need - 1, ram_usable=RAM)
    assert (short.status, short.kv_type, short.n_ctx) == ("fits", "q8_0", 8192)


def test_does_not_fit_anywhere(models: dict[str, GGUFInfo]) -> None:
    plan = plan_model(models["32B"], TIERS["4gb"], ram_usable=8 * GIB)
    assert plan.status == "does-not-fit" and not plan.fits
    assert any("host memory" in reason for reason in plan.reasons)
    cpu = plan_model(models["14B"], TIERS["cpu"], ram_usable=4 * GIB)
    assert cpu.status == "does-not-fit"
    assert any(item.startswith("more host memory") for item in cpu.advice)


def test_cpu_tier_with_little_memory_quantizes_the_cache(models: dict[str, GGUFInfo]) -> None:
    info = models["7B"]
    f16 = _memory(info, _Option(0, 4096, "f16", 512, False)).cpu
    plan = plan_model(info, TIERS["cpu"], ram_usable=f16 - 1)
    assert (plan.status, plan.n_gpu_layers, plan.kv_type) == ("cpu", 0, "q8_0")
    assert plan.flash_attn  # llama.cpp needs it for a quantized V cache


def test_explicit_settings_override_the_planner(models: dict[str, GGUFInfo]) -> None:
    plan = plan_model(
        models["7B"], TIERS["20gb"], n_ctx=4096, kv_type="q4_0", n_gpu_layers=10, ram_usable=RAM
    )
    assert (plan.n_ctx, plan.kv_type, plan.n_gpu_layers, plan.status) == (
        4096,
        "q4_0",
        10,
        "partial",
    )
    kwargs = plan.llama_kwargs()
    assert kwargs["type_k"] == kwargs["type_v"] == int(gguf.GGMLQuantizationType.Q4_0)
    assert kwargs["n_gpu_layers"] == 10 and kwargs["n_ctx"] == 4096


def test_context_is_capped_at_the_trained_length(tmp_path: Path) -> None:
    info = GGUFInfo.read(write_gguf(tmp_path / "short.gguf", QWEN25["1.5B"], context=2048))
    plan = plan_model(info, TIERS["40gb"], ram_usable=RAM)
    assert plan.n_ctx == 2048
    assert any("trained for 2048" in reason for reason in plan.reasons)


def test_tiers_parse_presets_and_sizes() -> None:
    assert parse_tier("20GB") is TIERS["20gb"]
    assert parse_tier(12).gpu_gib == 12 and parse_tier("12gb").n_ctx == 32768
    assert parse_tier("8gb").n_ctx == 8192 and parse_tier("2").n_ctx == 8192
    assert parse_tier("24 GiB").n_ctx == 32768
    assert parse_tier("0") is TIERS["cpu"]
    with pytest.raises(ValueError, match="not one of cpu, 4gb, 20gb, 40gb"):
        parse_tier("big")
    assert usable_gpu_bytes(TIERS["4gb"]) == int(4 * GIB * 0.95) - 512 * MIB


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "model.gguf"
    text.write_text("not a model")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        GGUFInfo.read(text)
    full = write_gguf(tmp_path / "cut.gguf", QWEN25["1.5B"])
    with full.open("r+b") as handle:
        handle.truncate(full.stat().st_size // 2)
    with pytest.raises(GGUFError, match="download is incomplete"):
        GGUFInfo.read(full)
    with pytest.raises(GGUFError, match="cannot open"):
        GGUFInfo.read(tmp_path / "missing.gguf")


def test_plan_lines_for_doctor(models: dict[str, GGUFInfo]) -> None:
    plan = plan_for_file(models["14B"].path, "20gb")
    text = "\n".join(plan.lines())
    assert "Q4_K_M, 48 layers" in text
    assert "fits: 49/49 layers on the GPU, n_ctx 32768, KV f16" in text
    assert "tier 20gb (20 GiB GPU; recommended: Qwen2.5-14B-Instruct Q4_K_M" in text
