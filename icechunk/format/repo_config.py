"""The persisted repository configuration as a serde-shaped value (FORMAT.md §4.4).

``Repo.config`` holds the serde serialization of the reference ``RepositoryConfig`` in
FlexBuffers.  This module converts it to and from a plain Python value; mapping that value to
the public config classes is the job of :mod:`icechunk.config`.

The value mirrors serde's data model exactly:

* a struct is a ``dict`` keyed by field name; reference writers emit **every** field (None for
  unset ones), older writers lack newer fields, so readers must treat a missing key like None;
* a map (``virtual_chunk_containers``, the http/gcs/azure option maps) is a ``dict``;
* a vector or tuple is a ``list``;
* an enum is externally tagged: a unit variant is a ``str`` (``"Any"``, ``"any_array"``,
  ``"in_memory"``), a newtype or struct variant a one-entry ``dict``
  (``{"Axis": 0}``, ``{"local_file_system": ""}``, ``{"s3_compatible": {...}}``);
* integers are ``int``, booleans ``bool``, strings ``str``, None is None.

Shape decoded from ``test-repo-v2/repo`` (keys in this order; declaration order)::

    {"inline_chunk_threshold_bytes": 12,
     "get_partial_values_concurrency": None,
     "compression": None,          # or {"algorithm": "zstd" | None, "level": int | None}
     "max_concurrent_requests": None,
     "caching": None,              # or {"num_snapshot_nodes", "num_chunk_refs",
                                   #     "num_transaction_changes", "num_bytes_attributes",
                                   #     "num_bytes_chunks"}
     "storage": {
         "concurrency": {"max_concurrent_requests_for_object": 5,
                         "ideal_concurrent_request_size": 4096},
         "retries": {"max_tries": 1, "initial_backoff_ms": 0, "max_backoff_ms": 0},
         "timeouts": None,         # or {"connect_timeout_ms", "read_timeout_ms",
                                   #     "operation_timeout_ms", "operation_attempt_timeout_ms"}
         "unsafe_use_conditional_update": False,
         "unsafe_use_conditional_create": None,
         "unsafe_use_metadata": False,
         "storage_class": None,
         "metadata_storage_class": None,
         "chunks_storage_class": None,
         "minimum_size_for_multipart_upload": None},
     "virtual_chunk_containers": {
         "s3://testbucket/": {
             "name": None,
             "url_prefix": "s3://testbucket/",
             "store": {"s3_compatible": {
                 "region": "us-east-1", "endpoint_url": "http://localhost:4200",
                 "anonymous": False, "allow_http": True, "force_path_style": True,
                 "network_stream_timeout_seconds": 60, "requester_pays": False}}}},
                 # newer writers add "checksum_algorithm" at the end of the S3 options
     "manifest": None,
     "previous_file": None,
     "repo_update_retries": None,  # or {"default": {"max_tries", "initial_backoff_ms",
                                   #                 "max_backoff_ms"}}
     "num_updates_per_repo_info_file": None}

``test-repo-v2-migrated/repo`` has the same top level and ``storage`` block, and five legacy
containers, in this (HashMap) order: ``"s3"`` (name ``"s3"``, url_prefix ``"s3://testbucket"``,
``{"s3_compatible": {... "network_stream_timeout_seconds": None, "requester_pays": False}}``),
``"az"`` (``{"azure": {}}``), ``"file"`` (``{"local_file_system": ""}``), ``"gcs"``
(``{"gcs": {}}``) and ``"tigris"`` (``{"tigris": {"region": None, "endpoint_url":
"https://fly.storage.tigris.dev", "anonymous": False, "allow_http": False,
"force_path_style": False, "network_stream_timeout_seconds": None, "requester_pays": False}}``);
each container's ``name`` and ``url_prefix`` equal its key.

Other store variants: ``"in_memory"`` (unit), ``{"http": {str: str}}``, ``{"gcs": {str: str}}``,
``{"azure": {str: str}}``, ``{"s3": S3Options}``, ``{"tigris": S3Options}``.

``manifest`` is ``{"preload", "splitting", "virtual_chunk_location_compression",
"max_concurrent_manifest_fetches_during_commit"}`` with

* ``preload = {"max_total_refs", "preload_if", "max_arrays_to_scan"}``; ``preload_if`` is a
  condition ``{"or": [...]}``, ``{"and": [...]}``, ``{"path_matches": {"regex": s}}``,
  ``{"name_matches": {"regex": s}}``, ``{"num_refs": {"from": bound, "to": bound}}``
  (bound = ``{"Included": n}``, ``{"Excluded": n}`` or ``"Unbounded"``), ``"true"`` or
  ``"false"`` (this variant set is not covered by any fixture);
* ``splitting = {"split_sizes": None | [[condition, [{"condition": dim, "num_chunks": n},
  ...]], ...]}`` where condition is ``{"path_matches": {"regex": s}}``,
  ``{"name_matches": {"regex": s}}``, ``{"or": [...]}``, ``{"and": [...]}`` or
  ``"any_array"`` and dim is ``{"Axis": n}``, ``{"DimensionName": regex}`` or ``"Any"``
  (``split-repo-v2``);
* ``virtual_chunk_location_compression = {"min_num_chunks",
  "dictionary_max_training_samples", "dictionary_max_size_bytes", "compression_level"}``.

Decoding keeps the order in which the writer inserted the entries (recovered from the buffer
layout; FlexBuffers itself sorts map keys) and then puts struct fields in declaration order,
so ``encode_repo_config(decode_repo_config(raw)) == raw`` for reference-written configs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from icechunk._errors import ErrorKind, FormatError
from icechunk.format.values import flex_dumps

__all__ = [
    "REPO_CONFIG_FIELDS",
    "decode_repo_config",
    "encode_repo_config",
    "normalize_repo_config",
]


# ---- the shape of RepositoryConfig (declaration orders of the reference structs) ------------


@dataclass(eq=False)
class _Struct:
    fields: dict[str, Any]  # field name -> shape of its value (None = leaf), in declaration order


@dataclass(eq=False)
class _MapOf:
    value: Any


@dataclass(eq=False)
class _ListOf:
    item: Any


@dataclass(eq=False)
class _TupleOf:
    items: tuple[Any, ...]


@dataclass(eq=False)
class _Enum:
    variants: dict[str, Any] = field(default_factory=dict)  # variant -> payload shape


_UNIT = object()  # payload shape of a unit variant


def _leaves(*names: str) -> _Struct:
    return _Struct(dict.fromkeys(names))


_RETRIES = _leaves("max_tries", "initial_backoff_ms", "max_backoff_ms")
_S3_OPTIONS = _leaves(
    "region",
    "endpoint_url",
    "anonymous",
    "allow_http",
    "force_path_style",
    "network_stream_timeout_seconds",
    "requester_pays",
    "checksum_algorithm",
)
_STRING_MAP = _MapOf(None)
_OBJECT_STORE = _Enum(
    {
        "in_memory": _UNIT,
        "local_file_system": None,
        "http": _STRING_MAP,
        "s3_compatible": _S3_OPTIONS,
        "s3": _S3_OPTIONS,
        "tigris": _S3_OPTIONS,
        "gcs": _STRING_MAP,
        "azure": _STRING_MAP,
    }
)
_REGEX = _leaves("regex")
_SPLIT_CONDITION = _Enum()
_SPLIT_CONDITION.variants.update(
    {
        "or": _ListOf(_SPLIT_CONDITION),
        "and": _ListOf(_SPLIT_CONDITION),
        "path_matches": _REGEX,
        "name_matches": _REGEX,
        "any_array": _UNIT,
    }
)
_DIM_CONDITION = _Enum({"Axis": None, "DimensionName": None, "Any": _UNIT})
_SPLIT_DIM = _Struct({"condition": _DIM_CONDITION, "num_chunks": None})
_BOUND = _Enum({"Included": None, "Excluded": None, "Unbounded": _UNIT})
_PRELOAD_CONDITION = _Enum()
_PRELOAD_CONDITION.variants.update(
    {
        "or": _ListOf(_PRELOAD_CONDITION),
        "and": _ListOf(_PRELOAD_CONDITION),
        "path_matches": _REGEX,
        "name_matches": _REGEX,
        "num_refs": _Struct({"from": _BOUND, "to": _BOUND}),
        "true": _UNIT,
        "false": _UNIT,
    }
)
_MANIFEST = _Struct(
    {
        "preload": _Struct(
            {"max_total_refs": None, "preload_if": _PRELOAD_CONDITION, "max_arrays_to_scan": None}
        ),
        "splitting": _Struct(
            {"split_sizes": _ListOf(_TupleOf((_SPLIT_CONDITION, _ListOf(_SPLIT_DIM))))}
        ),
        "virtual_chunk_location_compression": _leaves(
            "min_num_chunks",
            "dictionary_max_training_samples",
            "dictionary_max_size_bytes",
            "compression_level",
        ),
        "max_concurrent_manifest_fetches_during_commit": None,
    }
)
_STORAGE = _Struct(
    {
        "concurrency": _leaves(
            "max_concurrent_requests_for_object", "ideal_concurrent_request_size"
        ),
        "retries": _RETRIES,
        "timeouts": _leaves(
            "connect_timeout_ms",
            "read_timeout_ms",
            "operation_timeout_ms",
            "operation_attempt_timeout_ms",
        ),
        "unsafe_use_conditional_update": None,
        "unsafe_use_conditional_create": None,
        "unsafe_use_metadata": None,
        "storage_class": None,
        "metadata_storage_class": None,
        "chunks_storage_class": None,
        "minimum_size_for_multipart_upload": None,
    }
)
_REPOSITORY_CONFIG = _Struct(
    {
        "inline_chunk_threshold_bytes": None,
        "get_partial_values_concurrency": None,
        "compression": _leaves("algorithm", "level"),
        "max_concurrent_requests": None,
        "caching": _leaves(
            "num_snapshot_nodes",
            "num_chunk_refs",
            "num_transaction_changes",
            "num_bytes_attributes",
            "num_bytes_chunks",
        ),
        "storage": _STORAGE,
        "virtual_chunk_containers": _MapOf(
            _Struct({"name": None, "url_prefix": None, "store": _OBJECT_STORE})
        ),
        "manifest": _MANIFEST,
        "previous_file": None,
        "repo_update_retries": _Struct({"default": _RETRIES}),
        "num_updates_per_repo_info_file": None,
    }
)

REPO_CONFIG_FIELDS: tuple[str, ...] = tuple(_REPOSITORY_CONFIG.fields)
"""Top-level keys of the persisted RepositoryConfig, in declaration order."""


def _reshape(value: Any, shape: Any, wrap: Callable[[str, Any], Any] | None) -> Any:
    if value is None or shape is None or shape is _UNIT:
        return value
    if isinstance(shape, _Struct) and isinstance(value, dict):
        out = {k: _reshape(value[k], sub, wrap) for k, sub in shape.fields.items() if k in value}
        out.update((k, v) for k, v in value.items() if k not in out)  # unknown keys keep order
        return out
    if isinstance(shape, _MapOf) and isinstance(value, dict):
        return {k: _reshape(v, shape.value, wrap) for k, v in value.items()}
    if isinstance(shape, _ListOf) and isinstance(value, (list, tuple)):
        return [_reshape(v, shape.item, wrap) for v in value]
    if isinstance(shape, _TupleOf) and isinstance(value, (list, tuple)):
        subs = shape.items + (None,) * max(0, len(value) - len(shape.items))
        return [_reshape(v, sub, wrap) for v, sub in zip(value, subs, strict=False)]
    if isinstance(shape, _Enum) and isinstance(value, dict) and len(value) == 1:
        ((variant, payload),) = value.items()
        if payload is None and shape.variants.get(variant) is _UNIT:
            return variant  # a unit variant written as a tag without payload (``!in_memory``)
        payload = _reshape(payload, shape.variants.get(variant), wrap)
        return wrap(variant, payload) if wrap is not None else {variant: payload}
    return value


def normalize_repo_config(
    value: dict[str, Any], *, wrap_variant: Callable[[str, Any], Any] | None = None
) -> dict[str, Any]:
    """Return a copy of a serde-shaped config with struct fields in declaration order.

    Parameters
    ----------
    value
        The serde-shaped RepositoryConfig (see the module docstring).
    wrap_variant
        If given, every newtype/struct enum variant ``{variant: payload}`` is replaced by
        ``wrap_variant(variant, payload)`` (used by the YAML writer to emit tags).

    Unknown keys are kept after the known ones, in their own order; map entries keep their
    order; a unit variant given as ``{variant: None}`` becomes the plain string; values that
    do not have the expected type are passed through unchanged.
    """
    return _reshape(value, _REPOSITORY_CONFIG, wrap_variant)  # type: ignore[no-any-return]


def encode_repo_config(value: dict[str, Any]) -> bytes:
    """Encode the serde-shaped config as the FlexBuffer stored in ``Repo.config``.

    Struct fields are inserted in declaration order (unknown keys after them), map entries in
    the dict's order, non-negative integers as UInt: the layout the reference writes.

    Raises
    ------
    FormatError
        If the value holds something that is not a JSON-like value.
    """
    if not isinstance(value, dict):
        raise FormatError(
            f"repository config must be a dict, got {type(value).__name__}", ErrorKind.SERIALIZATION
        )
    try:  # (the FlexBuffers builder reports a bad value inside a map as a RuntimeError)
        return flex_dumps(normalize_repo_config(value), sort_keys=False)
    except (TypeError, ValueError, OverflowError, RuntimeError, struct.error) as err:
        raise FormatError(
            f"cannot encode repository config: {err}", ErrorKind.SERIALIZATION
        ) from None


# ---- FlexBuffers reader that keeps the writer's insertion order ------------------------------

_NULL, _INT, _UINT, _FLOAT, _KEY, _STRING = 0, 1, 2, 3, 4, 5
_INDIRECT_INT, _INDIRECT_UINT, _INDIRECT_FLOAT, _MAP, _VECTOR = 6, 7, 8, 9, 10
_BLOB, _BOOL, _VECTOR_BOOL = 25, 26, 36
_MAX_DEPTH = 64


class _FlexReader:
    """Decode a FlexBuffer, returning maps with entries in the order they were written.

    FlexBuffers sorts a map's keys, but each entry's key string and out-of-line value are
    written to the buffer when the entry is inserted, so their positions give back the
    insertion order: an entry is placed by its value's position when the value is out of line,
    else by its key's.  This is exact when every entry wrote its key (first use of that key in
    the buffer) or has an out-of-line value, which holds for every map of the reference config
    (struct fields are re-sorted by declaration order anyway, and the container and store
    option maps have out-of-line values).  An inline-valued entry whose key was first written
    elsewhere may land elsewhere; the decoded value is the same, only a re-encode could differ.
    """

    def __init__(self, buf: bytes) -> None:
        self.buf = buf

    def read_uint(self, pos: int, width: int) -> int:
        if pos < 0 or pos + width > len(self.buf) or width not in (1, 2, 4, 8):
            raise ValueError(f"read of {width} bytes at {pos} out of bounds")
        return int.from_bytes(self.buf[pos : pos + width], "little")

    def read_int(self, pos: int, width: int) -> int:
        value = self.read_uint(pos, width)
        bits = 8 * width
        return value - (1 << bits) if value >> (bits - 1) else value

    def read_float(self, pos: int, width: int) -> float:
        if width == 4:
            return float(struct.unpack("<f", self.buf[pos : pos + 4])[0])
        if width == 8:
            return float(struct.unpack("<d", self.buf[pos : pos + 8])[0])
        raise ValueError(f"unsupported float width {width}")

    def target(self, pos: int, width: int) -> int:
        off = self.read_uint(pos, width)
        target = pos - off
        if target < 0:  # offsets point backwards (0 is legal: an empty map's keys vector)
            raise ValueError(f"bad offset {off} at {pos}")
        return target

    def key(self, pos: int) -> str:
        end = self.buf.find(b"\x00", pos)
        if end < 0:
            raise ValueError("unterminated key")
        return self.buf[pos:end].decode("utf-8")

    def sized(self, pos: int, width: int) -> tuple[int, int]:
        n = self.read_uint(pos - width, width)
        if pos + n > len(self.buf):
            raise ValueError("sized object out of bounds")
        return pos, n

    def value(self, pos: int, parent_width: int, packed: int, depth: int) -> tuple[Any, int | None]:
        """(decoded value, buffer position of its out-of-line data or None when inline)."""
        if depth > _MAX_DEPTH:
            raise ValueError("nesting too deep")
        kind, width = packed >> 2, 1 << (packed & 3)
        if kind == _NULL:
            return None, None
        if kind == _BOOL:
            return self.read_uint(pos, parent_width) != 0, None
        if kind == _INT:
            return self.read_int(pos, parent_width), None
        if kind == _UINT:
            return self.read_uint(pos, parent_width), None
        if kind == _FLOAT:
            return self.read_float(pos, parent_width), None
        target = self.target(pos, parent_width)
        if kind == _INDIRECT_INT:
            return self.read_int(target, width), target
        if kind == _INDIRECT_UINT:
            return self.read_uint(target, width), target
        if kind == _INDIRECT_FLOAT:
            return self.read_float(target, width), target
        if kind == _KEY:
            return self.key(target), target
        if kind in (_STRING, _BLOB):
            start, n = self.sized(target, width)
            raw = self.buf[start : start + n]
            return (raw.decode("utf-8") if kind == _STRING else raw), target
        if kind == _MAP:
            return self.map(target, width, depth), target
        if kind == _VECTOR:
            start, n = self.sized(target, width)
            return [self.element(start, width, n, i, depth)[0] for i in range(n)], target
        return self.typed_vector(kind, target, width), target

    def element(self, start: int, width: int, n: int, i: int, depth: int) -> tuple[Any, int | None]:
        packed = self.read_uint(start + n * width + i, 1)
        return self.value(start + i * width, width, packed, depth + 1)

    def typed_vector(self, kind: int, start: int, width: int) -> list[Any]:
        if 11 <= kind <= 15 or kind == _VECTOR_BOOL:
            elem = _BOOL if kind == _VECTOR_BOOL else kind - 11 + _INT
            _, n = self.sized(start, width)
        elif 16 <= kind <= 24:
            elem, n = (kind - 16) % 3 + _INT, (kind - 16) // 3 + 2
        else:
            raise ValueError(f"unknown FlexBuffers type {kind}")
        # elements share the vector's width (deprecated typed string vectors hold offsets)
        packed = (elem << 2) | (width.bit_length() - 1)
        return [self.value(start + i * width, width, packed, 0)[0] for i in range(n)]

    def map(self, start: int, width: int, depth: int) -> dict[str, Any]:
        _, n = self.sized(start, width)
        keys_at = start - 3 * width
        keys_start = self.target(keys_at, width)
        keys_width = self.read_uint(start - 2 * width, width)
        if self.read_uint(keys_start - keys_width, keys_width) != n:
            raise ValueError("map keys and values differ in length")
        entries = []
        for i in range(n):
            key_pos = self.target(keys_start + i * keys_width, keys_width)
            value, value_pos = self.element(start, width, n, i, depth)
            # an empty vector/blob ends where the next entry's key starts: value first on ties
            order = (value_pos, 0) if value_pos is not None else (key_pos, 1)
            entries.append((order, self.key(key_pos), value))
        entries.sort(key=lambda e: e[0])
        return {k: v for _, k, v in entries}

    def root(self) -> Any:
        buf = self.buf
        if len(buf) < 3:
            raise ValueError("buffer too short")
        width = buf[-1]
        packed = buf[-2]
        return self.value(len(buf) - 2 - width, width, packed, 0)[0]


def decode_repo_config(raw: bytes | bytearray | memoryview, name: str = "repo") -> dict[str, Any]:
    """Decode the FlexBuffer of ``Repo.config`` into the serde-shaped value.

    Parameters
    ----------
    raw
        The bytes of the ``config`` field.
    name
        The object the bytes come from, for error messages.

    Raises
    ------
    FormatError
        If the bytes are not a FlexBuffer map (kind ``CONFIG_DESERIALIZATION``).
    """
    try:
        value = _FlexReader(bytes(raw)).root()
    except (ValueError, IndexError, TypeError, struct.error, RecursionError) as err:
        raise FormatError(
            f"cannot decode the repository config in {name}: {err}",
            ErrorKind.CONFIG_DESERIALIZATION,
        ) from None
    if not isinstance(value, dict):
        raise FormatError(
            f"the repository config in {name} is not a map", ErrorKind.CONFIG_DESERIALIZATION
        )
    return normalize_repo_config(value)
