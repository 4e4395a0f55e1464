"""Fit a GGUF model to the GPU an admin has: layers to offload, context length, KV-cache type.

The planner reads the model's shape from the GGUF header (bot.llm.gguf_info) and adds up what
llama.cpp will allocate: the weights of the offloaded layers, the KV cache for the context, and
a compute buffer for a micro-batch, against the stated GPU memory less a safety reserve. It
prefers, in order: everything on the GPU with an f16 KV cache at the tier's context; a q8_0 KV
cache (close to lossless); a shorter context, down to ``min_ctx``; a q4_0 cache; a smaller
micro-batch; and only then fewer layers on the GPU. When even that does not fit it says so, and
what would: a smaller quantization, a shorter context, or more memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gguf import GGMLQuantizationType

from bot.llm.gguf_info import GGUFInfo
from bot.llm.tiers import Tier, parse_tier

GIB = 1024**3
MIB = 1024**2

KVType = Literal["f16", "q8_0", "q4_0"]
KV_TYPES: dict[str, GGMLQuantizationType] = {
    "f16": GGMLQuantizationType.F16,
    "q8_0": GGMLQuantizationType.Q8_0,
    "q4_0": GGMLQuantizationType.Q4_0,
}
# llama.cpp needs flash attention for a quantized V cache; on a GPU it also saves the n_ctx x
# n_ubatch attention-score matrix, so GPU plans always use it.
CUDA_RESERVE = 512 * MIB  # CUDA context, cuBLAS workspace: memory the model never sees
SAFETY_FRACTION = 0.05  # fragmentation and estimate error
RAM_FRACTION = 0.85  # of physical memory, for what runs on the CPU
CTX_STEP = 256  # llama.cpp pads the context to this

# Approximate bits per weight of llama.cpp quantizations, for "what would fit" advice.
QUANT_BITS = {"Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.7, "Q4_K_M": 4.85, "Q3_K_M": 3.9, "Q2_K": 3.0}


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * GIB


def gib(n: float) -> str:
    """Bytes for people: GiB with one decimal, MiB below 1 GiB."""
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


@dataclass(frozen=True, slots=True)
class Memory:
    """Bytes each part of the model takes on the GPU and in host memory."""

    weights_gpu: int = 0
    weights_cpu: int = 0
    kv_gpu: int = 0
    kv_cpu: int = 0
    compute_gpu: int = 0
    compute_cpu: int = 0

    @property
    def gpu(self) -> int:
        return self.weights_gpu + self.kv_gpu + self.compute_gpu

    @property
    def cpu(self) -> int:
        return self.weights_cpu + self.kv_cpu + self.compute_cpu


Status = Literal["fits", "partial", "cpu", "does-not-fit"]


@dataclass(frozen=True)
class Plan:
    """How to load one model on one machine, and why."""

    model: str
    path: Path
    tier: Tier
    status: Status
    n_layers: int
    n_gpu_layers: int
    n_ctx: int
    kv_type: str
    n_batch: int
    n_ubatch: int
    flash_attn: bool
    memory: Memory
    gpu_usable: int
    ram_usable: int
    trained_ctx: int
    file_type: str
    file_size: int
    reasons: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return self.status in ("fits", "cpu")

    def llama_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``llama_cpp.Llama`` that carry out this plan."""
        kv = int(KV_TYPES[self.kv_type])
        return {
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "n_batch": self.n_batch,
            "n_ubatch": self.n_ubatch,
            "flash_attn": self.flash_attn,
            "type_k": kv,
            "type_v": kv,
        }

    def summary(self) -> str:
        where = (
            "CPU only"
            if self.n_gpu_layers == 0
            else f"{self.n_gpu_layers}/{self.n_layers + 1} layers on the GPU"
        )
        return (
            f"{self.status}: {where}, n_ctx {self.n_ctx}, KV {self.kv_type}, "
            f"batch {self.n_batch}/{self.n_ubatch}, flash attention "
            f"{'on' if self.flash_attn else 'off'}"
        )

    def lines(self) -> list[str]:
        """The plan as ``huixiangdou-bot doctor`` prints it."""
        mem = self.memory
        budget = "no GPU" if self.tier.gpu_gib == 0 else f"{self.tier.gpu_gib:g} GiB GPU"
        out = [
            f"{self.model}: {self.file_type}, {self.n_layers} layers, "
            f"trained context {self.trained_ctx}, file {self.file_size / 1e9:.2f} GB",
            f"tier {self.tier.name} ({budget}; recommended: {self.tier.recommended})",
            self.summary(),
            f"host memory {gib(mem.cpu)} of {gib(self.ram_usable)} usable "
            f"(weights {gib(mem.weights_cpu)}, KV {gib(mem.kv_cpu)}, "
            f"compute {gib(mem.compute_cpu)})",
        ]
        if self.tier.gpu_gib > 0:
            out.insert(
                3,
                f"GPU {gib(mem.gpu)} of {gib(self.gpu_usable)} usable "
                f"(weights {gib(mem.weights_gpu)}, KV {gib(mem.kv_gpu)}, "
                f"compute {gib(mem.compute_gpu)})",
            )
        out += [f"why: {reason}" for reason in self.reasons]
        out += [f"advice: {item}" for item in self.advice]
        return out


@dataclass(frozen=True, slots=True)
class _Option:
    layers: int  # llama.cpp's n_gpu_layers: blocks from the end, plus 1 for the output layer
    n_ctx: int
    kv_type: str
    n_ubatch: int
    flash_attn: bool


def _round_ctx(n: int) -> int:
    return max(CTX_STEP, n // CTX_STEP * CTX_STEP)


def _compute_bytes(info: GGUFInfo, n_ctx: int, n_ubatch: int, flash_attn: bool) -> int:
    """An upper estimate of llama.cpp's compute buffer: logits and the widest activations
    for one micro-batch, plus the attention scores when flash attention is off. (llama.cpp
    reports 304 MiB for Qwen2.5-7B at n_ubatch 512; this gives 371 MiB.)"""
    width = info.vocab_size + 2 * max(info.feed_forward_length, 4 * info.embedding_length)
    scores = 0 if flash_attn else n_ubatch * n_ctx * info.head_count * 4
    return n_ubatch * width * 4 + scores


def _memory(info: GGUFInfo, option: _Option, weight_scale: float = 1.0) -> Memory:
    """What ``option`` allocates; ``weight_scale`` models a smaller quantization."""
    n = info.block_count
    on_gpu = min(option.layers, n)
    first_gpu = n - on_gpu
    kv_type = KV_TYPES[option.kv_type]
    per_token = info.kv_bytes_per_token(kv_type, kv_type)
    layers = info.layer_bytes
    output_on_gpu = option.layers > n
    compute = _compute_bytes(info, option.n_ctx, option.n_ubatch, option.flash_attn)
    weights_gpu = sum(layers[first_gpu:]) + (info.output_bytes if output_on_gpu else 0)
    weights_cpu = (
        sum(layers[:first_gpu])
        + info.token_embedding_bytes
        + (0 if output_on_gpu else info.output_bytes)
    )
    return Memory(
        weights_gpu=int(weights_gpu * weight_scale),
        weights_cpu=int(weights_cpu * weight_scale),
        kv_gpu=int(sum(per_token[first_gpu:]) * option.n_ctx),
        kv_cpu=int(sum(per_token[:first_gpu]) * option.n_ctx),
        compute_gpu=compute if option.layers > 0 else 0,
        compute_cpu=compute,
    )


def _contexts(target: int, min_ctx: int) -> list[int]:
    sizes = [target]
    while sizes[-1] // 2 >= min_ctx:
        sizes.append(_round_ctx(sizes[-1] // 2))
    return sizes


def usable_gpu_bytes(tier: Tier) -> int:
    if tier.gpu_gib <= 0:
        return 0
    total = int(tier.gpu_gib * GIB)
    return max(0, int(total * (1 - SAFETY_FRACTION)) - CUDA_RESERVE)


def plan_model(
    info: GGUFInfo,
    tier: Tier,
    *,
    n_ctx: int | None = None,
    kv_type: str = "auto",
    n_gpu_layers: int | None = None,
    n_batch: int | None = None,
    min_ctx: int = 4096,
    gpu_usable: int | None = None,
    ram_usable: int | None = None,
) -> Plan:
    """Choose how to load ``info`` within ``tier``; explicit arguments override the choice."""
    n = info.block_count
    full = n + 1
    trained = info.context_length or tier.n_ctx
    reasons: list[str] = []
    gpu = usable_gpu_bytes(tier) if gpu_usable is None else gpu_usable
    ram = int(physical_memory() * RAM_FRACTION) if ram_usable is None else ram_usable
    if n_ctx is not None:
        target = _round_ctx(n_ctx)
        contexts = [target]
        if n_ctx > trained:
            reasons.append(f"n_ctx {n_ctx} is beyond the trained context {trained}")
    else:
        target = _round_ctx(min(tier.n_ctx, trained))
        contexts = _contexts(target, min(min_ctx, target))
        if trained < tier.n_ctx:
            reasons.append(f"context {target}: the model was trained for {trained}")
    kv_types = list(KV_TYPES) if kv_type == "auto" else [kv_type]
    ubatches = [n_batch] if n_batch else [512, 256, 128]

    def fits(option: _Option) -> bool:
        memory = _memory(info, option)
        return memory.gpu <= gpu and memory.cpu <= ram

    def make(option: _Option, status: Status) -> Plan:
        return Plan(
            model=info.name,
            path=info.path,
            tier=tier,
            status=status,
            n_layers=n,
            n_gpu_layers=option.layers,
            n_ctx=option.n_ctx,
            kv_type=option.kv_type,
            n_batch=max(option.n_ubatch, n_batch or 512),
            n_ubatch=option.n_ubatch,
            flash_attn=option.flash_attn,
            memory=_memory(info, option),
            gpu_usable=gpu,
            ram_usable=ram,
            trained_ctx=trained,
            file_type=info.file_type,
            file_size=info.file_size,
            reasons=tuple(reasons),
            advice=tuple(_advice(info, tier, option, gpu, ram, target, min_ctx)),
        )

    # -- CPU only: everything must fit in host memory ----------------------------------------
    if tier.gpu_gib <= 0 or n_gpu_layers == 0:
        if tier.gpu_gib > 0:
            reasons.append("n_gpu_layers 0 set in bot.yaml: all layers run on the CPU")
        else:
            reasons.append("no GPU in this tier: all layers run on the CPU")
        if n_gpu_layers:
            reasons.append(f"n_gpu_layers {n_gpu_layers} ignored: set llm.tier to your GPU")
        cpu_options = [
            _Option(0, ctx, kv, ubatches[0], kv != "f16") for ctx in contexts for kv in kv_types
        ]
        for option in cpu_options:
            if fits(option):
                _explain(info, option, cpu_options[0], reasons, gpu, ram)
                return make(option, "cpu")
        reasons.append(f"weights alone need {gib(info.weight_bytes)} of host memory")
        return make(cpu_options[-1], "does-not-fit")

    # -- An explicit layer count is the admin's call; only the rest is planned --------------
    if n_gpu_layers is not None:
        layers = full if n_gpu_layers < 0 else min(n_gpu_layers, full)
        reasons.append(f"n_gpu_layers {n_gpu_layers} set in bot.yaml")
        options = [
            _Option(layers, ctx, kv, ub, True)
            for ctx in contexts
            for kv in kv_types
            for ub in ubatches
        ]
        for option in options:
            if fits(option):
                _explain(info, option, options[0], reasons, gpu, ram)
                return make(option, "fits" if layers == full else "partial")
        reasons.append(f"{layers} layers do not fit in {gib(gpu)} usable at any context")
        return make(options[-1], "does-not-fit")

    # -- Everything on the GPU, giving up KV precision and context before layers ------------
    preferred = _Option(full, contexts[0], kv_types[0], ubatches[0], True)
    for option in _full_offload_options(full, contexts, kv_types, ubatches):
        if fits(option):
            _explain(info, option, preferred, reasons, gpu, ram)
            return make(option, "fits")

    # -- Part of the model on the GPU, the rest on the CPU -----------------------------------
    kv = "q8_0" if "q8_0" in kv_types else kv_types[0]
    ctx = contexts[0]
    for layers in range(n, 0, -1):
        option = _Option(layers, ctx, kv, ubatches[0], True)
        if fits(option):
            need = _memory(info, preferred).gpu
            reasons.append(
                f"the whole model needs {gib(need)} on the GPU, {gib(gpu)} usable: "
                f"{layers} of {n} blocks on the GPU, the rest on the CPU (slower)"
            )
            return make(option, "partial")
    option = _Option(0, ctx, kv, ubatches[0], kv != "f16")
    if fits(option):
        reasons.append(f"not even one layer fits in {gib(gpu)} of GPU memory: CPU only")
        return make(option, "cpu")
    reasons.append(
        f"the model needs {gib(_memory(info, option).cpu)} of host memory, "
        f"{gib(ram)} usable, and does not fit on the GPU"
    )
    return make(option, "does-not-fit")


def _full_offload_options(
    full: int, contexts: list[int], kv_types: list[str], ubatches: list[int]
) -> Iterator[_Option]:
    ub = ubatches[0]
    high = [k for k in kv_types if k != "q4_0"] or kv_types
    for kv in high:  # f16, then q8_0, at the target context
        yield _Option(full, contexts[0], kv, ub, True)
    for ctx in contexts[1:]:  # shorter contexts with the lightest high-precision cache
        yield _Option(full, ctx, high[-1], ub, True)
    if "q4_0" in kv_types:
        for ctx in contexts:
            yield _Option(full, ctx, "q4_0", ub, True)
    for smaller in ubatches[1:]:
        yield _Option(full, contexts[-1], kv_types[-1], smaller, True)


def _explain(
    info: GGUFInfo,
    chosen: _Option,
    preferred: _Option,
    reasons: list[str],
    gpu: int,
    ram: int,
) -> None:
    memory = _memory(info, chosen)
    if chosen.layers:
        reasons.append(
            f"all {info.block_count} blocks and the output layer on the GPU"
            if chosen.layers > info.block_count
            else f"{chosen.layers} of {info.block_count + 1} layers on the GPU"
        )
    reasons.append(
        f"KV cache {chosen.kv_type} for {chosen.n_ctx} tokens: "
        f"{gib(memory.kv_gpu + memory.kv_cpu)}"
    )
    if chosen != preferred:
        wanted = _memory(info, preferred)
        where, have, need = (
            ("GPU", gpu, wanted.gpu) if chosen.layers else ("host memory", ram, wanted.cpu)
        )
        reasons.append(
            f"{preferred.kv_type} KV at {preferred.n_ctx} tokens would need {gib(need)} "
            f"of {where}, {gib(have)} usable"
        )


def _advice(
    info: GGUFInfo,
    tier: Tier,
    chosen: _Option,
    gpu: int,
    ram: int,
    target: int,
    min_ctx: int,
) -> list[str]:
    """What would run better than ``chosen``; nothing when it keeps the whole model on its
    device at the full context with a high-precision KV cache."""
    on_cpu = tier.gpu_gib <= 0
    layers = 0 if on_cpu else info.block_count + 1
    whole = chosen.layers == layers or (on_cpu and chosen.layers == 0)
    if whole and chosen.n_ctx >= target and chosen.kv_type != "q4_0":
        return []
    limit = ram if on_cpu else gpu

    def need(ctx: int, kv: str, scale: float = 1.0) -> int:
        memory = _memory(info, _Option(layers, ctx, kv, 512, not on_cpu or kv != "f16"), scale)
        return memory.cpu if on_cpu else memory.gpu

    advice: list[str] = []
    fitting = [ctx for ctx in _contexts(target, 512) if need(ctx, "q8_0") <= limit]
    if fitting and (not whole or fitting[0] > chosen.n_ctx):
        advice.append(
            f"a shorter context: n_ctx {fitting[0]} with a q8_0 KV cache fits the whole model"
        )
    ctx = min(target, max(min_ctx, 4096))
    for quant, bits in QUANT_BITS.items():
        if (
            bits < info.bits_per_weight - 0.25
            and need(ctx, "q8_0", bits / info.bits_per_weight) <= limit
        ):
            advice.append(
                f"a smaller quantization: {quant} (about {info.n_params * bits / 8 / 1e9:.1f} GB) "
                f"fits the whole model with n_ctx {ctx} and a q8_0 KV cache"
            )
            break
    wanted = need(target, "f16")
    if on_cpu:
        more = f"more host memory: {gib(wanted / RAM_FRACTION)} of RAM"
    else:
        more = f"more GPU memory: {gib((wanted + CUDA_RESERVE) / (1 - SAFETY_FRACTION))}"
    advice.append(f"{more} would hold the whole model with an f16 KV cache at {target} tokens")
    if not on_cpu:
        advice.append(f"a model sized for this tier: {tier.recommended}")
    return advice


def plan_for_file(
    path: Path,
    tier: str | float,
    *,
    n_ctx: int | None = None,
    kv_type: str = "auto",
    n_gpu_layers: int | None = None,
    n_batch: int | None = None,
) -> Plan:
    """Read ``path``'s header and plan it for ``tier`` (``cpu``, ``4gb``, ``20gb``, ``12gb``)."""
    return plan_model(
        GGUFInfo.read(path),
        parse_tier(tier),
        n_ctx=n_ctx,
        kv_type=kv_type,
        n_gpu_layers=n_gpu_layers,
        n_batch=n_batch,
    )


@dataclass(frozen=True, slots=True)
class Shape:
    """A published model configuration (its ``config.json``), for checking the arithmetic."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tied_embeddings: bool
    context: int
    published_params: float  # billions, as the model card states
    published_q4_k_m_gb: float  # the Q4_K_M GGUF file size, GB = 1e9 bytes
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def kv_bytes_per_token_f16(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * 2


# Qwen2.5 instruct models (Hugging Face config.json of Qwen/Qwen2.5-*-Instruct; file sizes of
# the common community Q4_K_M GGUF builds).
QWEN25 = {
    "1.5B": Shape("Qwen2.5-1.5B-Instruct", 28, 1536, 12, 2, 8960, 151936, True, 32768, 1.54, 0.99),
    "3B": Shape("Qwen2.5-3B-Instruct", 36, 2048, 16, 2, 11008, 151936, True, 32768, 3.09, 1.93),
    "7B": Shape("Qwen2.5-7B-Instruct", 28, 3584, 28, 4, 18944, 152064, False, 32768, 7.61, 4.68),
    "14B": Shape("Qwen2.5-14B-Instruct", 48, 5120, 40, 8, 13824, 152064, False, 32768, 14.7, 8.99),
    "32B": Shape(
        "Qwen2.5-32B-Instruct", 64, 5120, 40, 8, 27648, 152064, False, 32768, 32.5, 19.85
    ),
}
