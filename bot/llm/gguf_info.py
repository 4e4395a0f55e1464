"""What a GGUF file declares about its model, read from the header without touching the weights.

The ``gguf`` package's ``GGUFReader`` builds a numpy view for every vocabulary entry (several
seconds for a 50k vocabulary, far more for Qwen's 152k), so this walks the header itself with
``struct``, using the package's constants for value types and quantization block sizes. Weight
sizes come from the tensor infos (shape x quantization type), never from the file size, so a file
that declares a 32B model's tensors is planned as a 32B model.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gguf import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
    LlamaFileType,
)

# Arrays longer than this (the vocabulary, merges, token types) are skipped; only their length
# is kept. Per-layer arrays (head counts) are far shorter.
_MAX_ARRAY_ITEMS = 4096

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}

_SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")


class GGUFError(Exception):
    """The file is not a GGUF model this code can read; the message says why."""


def tensor_bytes(shape: tuple[int, ...], ggml_type: GGMLQuantizationType) -> int:
    """Bytes a tensor of this shape takes in this quantization type."""
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    elements = 1
    for dim in shape:
        elements *= dim
    return elements * type_size // block_size


def bytes_per_element(ggml_type: GGMLQuantizationType) -> float:
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    return type_size / block_size


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: GGMLQuantizationType
    n_bytes: int

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


class _Cursor:
    def __init__(self, data: mmap.mmap | bytes, path: Path) -> None:
        self.data = data
        self.offset = 0
        self.path = path

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise GGUFError(f"{self.path}: the header is cut short (truncated download?)")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return value

    def string(self) -> str:
        length = self.unpack("Q")
        end = self.offset + length
        if end > len(self.data):
            raise GGUFError(f"{self.path}: the header is cut short (truncated download?)")
        raw = bytes(self.data[self.offset : end])
        self.offset = end
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.offset += 8 + self.unpack("Q")

    def value(self, kind: GGUFValueType) -> Any:
        if kind == GGUFValueType.STRING:
            return self.string()
        if kind == GGUFValueType.ARRAY:
            item_kind = GGUFValueType(self.unpack("I"))
            count = self.unpack("Q")
            if count > _MAX_ARRAY_ITEMS:
                self.skip_array(item_kind, count)
                return _LongArray(count)
            return [self.value(item_kind) for _ in range(count)]
        fmt = _SCALARS.get(kind)
        if fmt is None:
            raise GGUFError(f"{self.path}: unknown metadata value type {kind}")
        return self.unpack(fmt)

    def skip_array(self, kind: GGUFValueType, count: int) -> None:
        if kind == GGUFValueType.STRING:
            for _ in range(count):
                self.skip_string()
        elif kind == GGUFValueType.ARRAY:
            for _ in range(count):
                self.value(kind)
        else:
            self.offset += struct.calcsize("<" + _SCALARS[kind]) * count


@dataclass(frozen=True, slots=True)
class _LongArray:
    """A metadata array too long to keep (the vocabulary): only its length is kept."""

    length: int


def _read_one(path: Path) -> tuple[dict[str, Any], list[TensorInfo], int]:
    try:
        with path.open("rb") as handle:
            try:
                data: mmap.mmap | bytes = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                data = b""
    except OSError as exc:
        raise GGUFError(f"{path}: cannot open: {exc.strerror or exc}") from None
    cursor = _Cursor(data, path)
    try:
        if len(data) < 24 or cursor.unpack("I") != GGUF_MAGIC:
            raise GGUFError(f"{path}: not a GGUF file (wrong magic number)")
        version = cursor.unpack("I")
        if version not in (2, 3):
            raise GGUFError(
                f"{path}: GGUF version {version} is not supported (2 and 3 are); "
                "convert the model again with a current llama.cpp"
            )
        n_tensors = cursor.unpack("Q")
        n_fields = cursor.unpack("Q")
        fields: dict[str, Any] = {}
        for _ in range(n_fields):
            key = cursor.string()
            kind = GGUFValueType(cursor.unpack("I"))
            fields[key] = cursor.value(kind)
        tensors: list[TensorInfo] = []
        for _ in range(n_tensors):
            name = cursor.string()
            n_dims = cursor.unpack("I")
            shape = tuple(cursor.unpack("Q") for _ in range(n_dims))
            ggml_type = GGMLQuantizationType(cursor.unpack("I"))
            cursor.unpack("Q")  # offset within the data section
            tensors.append(TensorInfo(name, shape, ggml_type, tensor_bytes(shape, ggml_type)))
        alignment = int(fields.get("general.alignment", GGUF_DEFAULT_ALIGNMENT))
        data_offset = -(-cursor.offset // alignment) * alignment
        declared = data_offset + sum(-(-t.n_bytes // alignment) * alignment for t in tensors)
        size = len(data)
    except (struct.error, ValueError) as exc:
        raise GGUFError(f"{path}: malformed GGUF header: {exc}") from None
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    # The last tensor need not be padded, so allow one alignment's worth of slack.
    if size + alignment < declared:
        raise GGUFError(
            f"{path}: the file is {size} bytes but its tensors need {declared}: "
            "the download is incomplete"
        )
    return fields, tensors, size


def _shard_paths(path: Path, fields: dict[str, Any]) -> list[Path]:
    count = int(fields.get("split.count", 1))
    if count <= 1:
        return [path]
    match = _SPLIT_NAME.match(path.name)
    if match is None:
        raise GGUFError(
            f"{path}: a split model ({count} files) whose name does not end in "
            "-00001-of-0000N.gguf: name the first shard in llm.model_path"
        )
    stem = match.group("stem")
    paths = [path.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise GGUFError(f"{path}: split model shard(s) missing: {', '.join(missing)}")
    return paths


@dataclass(frozen=True)
class GGUFInfo:
    """The model shape and weight sizes a GGUF file declares."""

    path: Path
    file_size: int
    fields: dict[str, Any] = field(repr=False)
    tensors: list[TensorInfo] = field(repr=False)

    @classmethod
    def read(cls, path: Path | str) -> GGUFInfo:
        path = Path(path)
        fields, tensors, size = _read_one(path)
        shards = _shard_paths(path, fields)
        for shard in shards[1:]:
            _, more, more_size = _read_one(shard)
            tensors = tensors + more
            size += more_size
        info = cls(path=path, file_size=size, fields=fields, tensors=tensors)
        if info.block_count <= 0:
            raise GGUFError(f"{path}: no {info.arch}.block_count: not a transformer chat model?")
        return info

    # -- metadata -------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """An architecture field (``attention.head_count``) or a full key."""
        for candidate in (f"{self.arch}.{key}", key):
            if candidate in self.fields:
                return self.fields[candidate]
        return default

    @property
    def arch(self) -> str:
        return str(self.fields.get("general.architecture", "unknown"))

    @property
    def name(self) -> str:
        return str(self.fields.get("general.name") or self.path.name)

    @property
    def block_count(self) -> int:
        return int(self.get("block_count", 0))

    @property
    def embedding_length(self) -> int:
        return int(self.get("embedding_length", 0))

    @property
    def feed_forward_length(self) -> int:
        value = self.get("feed_forward_length", 0)
        return int(max(value)) if isinstance(value, list) else int(value)

    @property
    def context_length(self) -> int:
        return int(self.get("context_length", 0))

    def _per_layer(self, key: str, default: int) -> list[int]:
        value = self.get(key, default)
        if isinstance(value, list):
            if len(value) != self.block_count:
                raise GGUFError(
                    f"{self.path}: {key} has {len(value)} entries for {self.block_count} layers"
                )
            return [int(v) for v in value]
        return [int(value)] * self.block_count

    @cached_property
    def head_counts(self) -> list[int]:
        return self._per_layer("attention.head_count", 0)

    @cached_property
    def kv_head_counts(self) -> list[int]:
        """KV heads per layer (grouped-query attention); as many as query heads when absent."""
        if self.get("attention.head_count_kv") is None:
            return self.head_counts
        return self._per_layer("attention.head_count_kv", 0)

    @property
    def head_count(self) -> int:
        return max(self.head_counts, default=0)

    @property
    def key_length(self) -> int:
        default = self.embedding_length // self.head_count if self.head_count else 0
        return int(self.get("attention.key_length", default))

    @property
    def value_length(self) -> int:
        default = self.embedding_length // self.head_count if self.head_count else 0
        return int(self.get("attention.value_length", default))

    @property
    def vocab_size(self) -> int:
        tokens = self.fields.get("tokenizer.ggml.tokens")
        if isinstance(tokens, _LongArray):
            return tokens.length
        if isinstance(tokens, list):
            return len(tokens)
        embd = self.tensor("token_embd.weight")
        if embd is not None and len(embd.shape) == 2:
            return embd.shape[1]
        return int(self.get("vocab_size", 0))

    @property
    def file_type(self) -> str:
        """The quantization the file was made with, as llama.cpp names it (``Q4_K_M``)."""
        value = self.fields.get("general.file_type")
        if value is None:
            return "unknown"
        try:
            return LlamaFileType(int(value)).name.removeprefix("MOSTLY_")
        except ValueError:
            return f"type {value}"

    @property
    def chat_template(self) -> str | None:
        template = self.fields.get("tokenizer.chat_template")
        return template if isinstance(template, str) else None

    # -- weights --------------------------------------------------------------------------

    def tensor(self, name: str) -> TensorInfo | None:
        return next((t for t in self.tensors if t.name == name), None)

    @cached_property
    def layer_bytes(self) -> list[int]:
        """Weight bytes of each repeating block (``blk.N.*``)."""
        sizes = [0] * self.block_count
        for tensor in self.tensors:
            if tensor.name.startswith("blk."):
                index = int(tensor.name.split(".", 2)[1])
                if index < self.block_count:
                    sizes[index] += tensor.n_bytes
        return sizes

    @property
    def token_embedding_bytes(self) -> int:
        """The input embedding table; llama.cpp keeps it in host memory."""
        embd = self.tensor("token_embd.weight")
        return embd.n_bytes if embd else 0

    @property
    def output_bytes(self) -> int:
        """The output layer (norm + head). With tied embeddings llama.cpp puts a copy of the
        embedding table there, so that is what it costs on the GPU."""
        head = self.tensor("output.weight")
        rest = sum(
            t.n_bytes
            for t in self.tensors
            if not t.name.startswith("blk.") and t.name not in ("token_embd.weight",)
        )
        return rest if head is not None else rest + self.token_embedding_bytes

    @property
    def weight_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.weight_bytes / self.n_params if self.n_params else 0.0

    def kv_bytes_per_token(
        self, type_k: GGMLQuantizationType, type_v: GGMLQuantizationType
    ) -> list[float]:
        """KV-cache bytes one token of context costs in each layer."""
        k_bytes = self.key_length * bytes_per_element(type_k)
        v_bytes = self.value_length * bytes_per_element(type_v)
        return [heads * (k_bytes + v_bytes) for heads in self.kv_head_counts]
