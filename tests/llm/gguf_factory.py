"""Synthetic GGUF files with the declared shapes of real models, written by ``gguf.GGUFWriter``.

The header (metadata and tensor infos) is exactly what a converted Qwen2.5 model declares, with
llama.cpp's Q4_K_M mix of quantization types; the tensor data is a hole: the file is extended to
its full size with ``truncate``, so a "32B" file reports 19.9 GB but takes a few kilobytes of
disk (a sparse file). Used by the planner tests and bench/planner_tiers.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, LlamaFileType

from bot.llm.planner import Shape

Q = GGMLQuantizationType
FILE_TYPES = {
    "Q4_K_M": LlamaFileType.MOSTLY_Q4_K_M,
    "Q6_K": LlamaFileType.MOSTLY_Q6_K,
    "Q8_0": LlamaFileType.MOSTLY_Q8_0,
    "F16": LlamaFileType.MOSTLY_F16,
}
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits(): which layers Q4_K_M keeps at Q6_K."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _type(quant: str, role: str, layer: int, n_layers: int) -> GGMLQuantizationType:
    if quant == "Q4_K_M":
        if role == "output":
            return Q.Q6_K
        if role in ("attn_v", "ffn_down") and _more_bits(layer, n_layers):
            return Q.Q6_K
        return Q.Q4_K
    return {"Q6_K": Q.Q6_K, "Q8_0": Q.Q8_0, "F16": Q.F16}[quant]


def qwen2_tensors(shape: Shape, quant: str) -> list[tuple[str, tuple[int, ...], Q]]:
    """(name, GGUF dims ne0-first, type) for every tensor of a Qwen2 model."""
    h, kv, ff, n = shape.hidden, shape.kv_heads * shape.head_dim, shape.ffn, shape.layers
    f32 = Q.F32
    embd_role = "output" if shape.tied_embeddings else "token_embd"
    tensors = [("token_embd.weight", (h, shape.vocab), _type(quant, embd_role, 0, n))]
    for i in range(n):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", (h,), f32),
            (p + "attn_q.weight", (h, h), _type(quant, "attn_q", i, n)),
            (p + "attn_q.bias", (h,), f32),
            (p + "attn_k.weight", (h, kv), _type(quant, "attn_k", i, n)),
            (p + "attn_k.bias", (kv,), f32),
            (p + "attn_v.weight", (h, kv), _type(quant, "attn_v", i, n)),
            (p + "attn_v.bias", (kv,), f32),
            (p + "attn_output.weight", (h, h), _type(quant, "attn_output", i, n)),
            (p + "ffn_norm.weight", (h,), f32),
            (p + "ffn_gate.weight", (h, ff), _type(quant, "ffn_gate", i, n)),
            (p + "ffn_up.weight", (h, ff), _type(quant, "ffn_up", i, n)),
            (p + "ffn_down.weight", (ff, h), _type(quant, "ffn_down", i, n)),
        ]
    tensors.append(("output_norm.weight", (h,), f32))
    if not shape.tied_embeddings:
        tensors.append(("output.weight", (h, shape.vocab), _type(quant, "output", 0, n)))
    return tensors


def write_gguf(
    path: Path,
    shape: Shape,
    quant: str = "Q4_K_M",
    *,
    context: int | None = None,
    with_vocab: bool = False,
    chat_template: str | None = CHATML,
) -> Path:
    """Write a sparse GGUF file declaring ``shape`` at ``quant``; returns ``path``."""
    writer = GGUFWriter(path, "qwen2")
    writer.add_name(f"{shape.name} (synthetic)")
    writer.add_block_count(shape.layers)
    writer.add_context_length(context or shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_file_type(int(FILE_TYPES[quant]))
    writer.add_string("tokenizer.ggml.model", "gpt2")
    if with_vocab:
        writer.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(shape.vocab)])
    if chat_template:
        writer.add_string("tokenizer.chat_template", chat_template)
    total = 0
    alignment = writer.data_alignment
    for name, dims, ggml_type in qwen2_tensors(shape, quant):
        block, size = GGML_QUANT_SIZES[ggml_type]
        elements = int(np.prod(dims))
        nbytes = elements * size // block
        writer.add_tensor_info(
            name, tuple(reversed(dims)), np.dtype(np.float32), nbytes, raw_dtype=ggml_type
        )
        total += -(-nbytes // alignment) * alignment
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    assert writer.fout is not None
    handle = writer.fout[0]
    data_offset = -(-handle.tell() // alignment) * alignment
    handle.truncate(data_offset + total)  # a hole, not gigabytes of zeros
    writer.close()
    return path
