"""Read what the proxy needs from a GGUF file's header: chat templates, bos/eos, context length,
and the attention shape that sizes the KV cache.

``gguf.GGUFReader`` parses every key and tensor into numpy arrays, which takes
seconds on a large vocabulary (11.8 s for Gemma 3's 262k tokens here). This
reader walks the key/value section only, with ``gguf``'s own type constants,
skipping big arrays by arithmetic and reading just the two token strings it
needs, so even a multi-GB file answers in milliseconds.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf.constants import GGUF_MAGIC, GGUFValueType

# scalar value types: struct format
_SCALARS: dict[int, str] = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.FLOAT64: "<d",
    GGUFValueType.BOOL: "<?",
}
_MAX_KV = 1_000_000
_TOKENS_KEY = "tokenizer.ggml.tokens"


class GGUFError(ValueError):
    """The file is not a readable GGUF file; the message names it."""


@dataclass
class ModelMetadata:
    path: Path
    architecture: str | None = None
    name: str | None = None
    context_length: int | None = None
    #: ``tokenizer.chat_template``; named variants (``tokenizer.chat_template.NAME``) are not read:
    #: llama-server and oaiproxy use the default one
    chat_template: str | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    bos_token: str = ""
    eos_token: str = ""
    add_bos_token: bool | None = None
    # attention shape (``<arch>.block_count`` ...): what the KV cache costs per token of context
    block_count: int | None = None
    embedding_length: int | None = None
    #: an int, or one per layer (some architectures vary it by layer)
    head_count: int | list[int] | None = None
    head_count_kv: int | list[int] | None = None
    key_length: int | None = None
    value_length: int | None = None

    def kv_bytes_per_token(self) -> int | None:
        """Bytes of f16 KV cache one token of context takes, all layers; None when the header lacks the shape.

        ``block_count × (head_count_kv × (key_length + value_length)) × 2``, with llama.cpp's defaults for
        the missing parts: key/value length ``embedding_length / head_count``, ``head_count_kv =
        head_count``. An upper bound for models with sliding-window layers (llama.cpp keeps a smaller
        cache for those), which is the safe side for a memory cap.
        """
        layers, width = self.block_count, self.embedding_length
        if not isinstance(layers, int) or layers <= 0:
            return None
        heads = _per_layer(self.head_count, layers)
        kv_heads = _per_layer(self.head_count_kv, layers) or heads
        if not kv_heads:
            return None
        total = 0
        for i in range(layers):
            head_dim = (width // heads[i]) if (heads and heads[i] and isinstance(width, int)) else None
            k = self.key_length or head_dim
            v = self.value_length or head_dim
            if not k or not v:
                return None
            total += kv_heads[i] * (k + v) * 2
        return total or None


def _per_layer(value: int | list[int] | None, layers: int) -> list[int] | None:
    """An int or a per-layer list as one value per layer (None when absent or malformed)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return [value] * layers
    if isinstance(value, list) and len(value) == layers and all(isinstance(v, int) for v in value):
        return list(value)
    return None


#: ``<arch>.<suffix>`` keys kept for :class:`ModelMetadata`'s attention shape
_SHAPE_KEYS = {
    "block_count": "block_count", "embedding_length": "embedding_length",
    "attention.head_count": "head_count", "attention.head_count_kv": "head_count_kv",
    "attention.key_length": "key_length", "attention.value_length": "value_length",
}


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, path: Path):
        self.buf = buf
        self.pos = 0
        self.path = path

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError(f"{self.path}: truncated GGUF file (header ends early at byte {self.pos})")

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self.need(size)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        self.need(n)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", "replace")

    def skip_string(self) -> None:
        n = self.scalar("<Q")
        self.need(n)
        self.pos += n

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == GGUFValueType.STRING:
            if keep:
                return self.string()
            self.skip_string()
            return None
        if vtype == GGUFValueType.ARRAY:
            itype = self.scalar("<I")
            count = self.scalar("<Q")
            if itype in _SCALARS:
                size = struct.calcsize(_SCALARS[itype])
                self.need(size * count)
                start = self.pos
                self.pos += size * count
                if keep and count <= 1024:
                    return list(struct.iter_unpack(_SCALARS[itype], self.buf[start : self.pos]))
                return None
            if itype == GGUFValueType.STRING:
                if keep and count <= 1024:
                    return [self.string() for _ in range(count)]
                for _ in range(count):
                    self.skip_string()
                return None
            if itype == GGUFValueType.ARRAY:
                for _ in range(count):
                    self.value(GGUFValueType.ARRAY, False)
                return None
            raise GGUFError(f"{self.path}: unknown GGUF array item type {itype} at byte {self.pos}")
        raise GGUFError(f"{self.path}: unknown GGUF value type {vtype} at byte {self.pos}")


def _token_strings(cur: _Cursor, wanted: set[int]) -> dict[int, str]:
    """Walk the token array, keeping the strings at the wanted ids."""
    itype = cur.scalar("<I")
    count = cur.scalar("<Q")
    if itype != GGUFValueType.STRING:
        cur.pos -= 12
        cur.value(GGUFValueType.ARRAY, False)
        return {}
    found: dict[int, str] = {}
    buf, pos, end = cur.buf, cur.pos, len(cur.buf)
    unpack = struct.unpack_from
    for i in range(count):
        if pos + 8 > end:
            cur.pos = pos
            cur.need(8)
        (n,) = unpack("<Q", buf, pos)
        pos += 8
        if i in wanted:
            if pos + n > end:
                cur.pos = pos
                cur.need(n)
            found[i] = bytes(buf[pos : pos + n]).decode("utf-8", "replace")
        pos += n
    if pos > end:
        cur.pos = end
        cur.need(1)
    cur.pos = pos
    return found


def read_metadata(path: str | Path) -> ModelMetadata:
    """Read a GGUF file's metadata; :class:`GGUFError` if it is not GGUF or is truncated."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            try:
                buf: mmap.mmap | bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # empty file
                buf = b""
            try:
                return _parse(_Cursor(buf, path))
            finally:
                if isinstance(buf, mmap.mmap):
                    buf.close()
    except FileNotFoundError:
        raise GGUFError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GGUFError(f"{path}: is a directory, not a GGUF file") from None
    except PermissionError:
        raise GGUFError(f"{path}: permission denied") from None


def _parse(cur: _Cursor) -> ModelMetadata:
    meta = ModelMetadata(path=cur.path)
    if len(cur.buf) < 4 or struct.unpack_from("<I", cur.buf, 0)[0] != GGUF_MAGIC:
        raise GGUFError(f"{cur.path}: not a GGUF file (bad magic)")
    cur.pos = 4
    version = cur.scalar("<I")
    if version not in (2, 3):
        raise GGUFError(f"{cur.path}: unsupported GGUF version {version}")
    cur.scalar("<Q")  # tensor count
    kv_count = cur.scalar("<Q")
    if kv_count > _MAX_KV:
        raise GGUFError(f"{cur.path}: implausible key count {kv_count}; file is corrupt")
    values: dict[str, Any] = {}
    tokens: dict[int, str] = {}
    tokens_at: int | None = None
    for _ in range(kv_count):
        key = cur.string()
        vtype = cur.scalar("<I")
        if key == _TOKENS_KEY and vtype == GGUFValueType.ARRAY:
            tokens_at = cur.pos  # bos/eos ids may come later: walk it after the ids are known
            cur.value(vtype, False)
            continue
        keep = key == "tokenizer.chat_template" or key.startswith(("general.", "tokenizer.ggml.")) or key.endswith(
            (".context_length", *(f".{suffix}" for suffix in _SHAPE_KEYS))
        )
        values[key] = cur.value(vtype, keep)
    meta.architecture = values.get("general.architecture")
    meta.name = values.get("general.name")
    if meta.architecture:
        meta.context_length = values.get(f"{meta.architecture}.context_length")
        for suffix, attr in _SHAPE_KEYS.items():
            value = values.get(f"{meta.architecture}.{suffix}")
            if isinstance(value, list):  # per-layer arrays come back as 1-tuples from struct.iter_unpack
                value = [v[0] if isinstance(v, tuple) else v for v in value]
            setattr(meta, attr, value)
    meta.chat_template = values.get("tokenizer.chat_template")
    meta.bos_token_id = values.get("tokenizer.ggml.bos_token_id")
    meta.eos_token_id = values.get("tokenizer.ggml.eos_token_id")
    meta.add_bos_token = values.get("tokenizer.ggml.add_bos_token")
    wanted = {i for i in (meta.bos_token_id, meta.eos_token_id) if isinstance(i, int)}
    if tokens_at is not None and wanted:
        cur.pos = tokens_at
        tokens = _token_strings(cur, wanted)
    meta.bos_token = tokens.get(meta.bos_token_id, "") if meta.bos_token_id is not None else ""
    meta.eos_token = tokens.get(meta.eos_token_id, "") if meta.eos_token_id is not None else ""
    return meta
