"""JSON-like values inside byte fields: FlexBuffers (spec 2) and MessagePack (spec 1).

Commit properties, repository metadata and the persisted repository configuration are JSON
values.  Spec-2 files store them as FlexBuffers with the mapping of the reference serializer
(non-negative ints as UInt, negative as Int, floats 64-bit, maps keyed by UTF-8 strings);
spec-1 files use compact MessagePack.  FORMAT.md §4.1 and §4.4.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import msgpack
from flatbuffers import flexbuffers

__all__ = [
    "flex_dumps",
    "flex_loads",
    "metadata_value_decode",
    "metadata_value_encode",
    "msgpack_dumps",
    "msgpack_loads",
]


class _Builder(flexbuffers.Builder):  # type: ignore[misc]
    """``flexbuffers.Builder`` with working key sharing.

    The upstream key pool inserts new keys at the wrong place in its sorted list, so repeated
    keys are often written again; the reference serializer writes each distinct key once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._key_offsets: dict[bytes, int] = {}

    def Key(self, value: bytes | bytearray | str) -> int:
        encoded = bytes(value) if isinstance(value, (bytes, bytearray)) else value.encode("utf-8")
        if 0 in encoded:
            raise ValueError("key contains zero byte")
        loc = self._key_offsets.get(encoded)
        if loc is None:
            loc = len(self._buf)
            self._buf.extend(encoded)
            self._buf.append(0)
            self._key_offsets[encoded] = loc
        self._stack.append(flexbuffers.Value.Key(loc))
        return loc


def _add(builder: flexbuffers.Builder, value: Any, sort_keys: bool) -> None:
    if value is None:
        builder.Null()
    elif isinstance(value, bool):
        builder.Bool(value)
    elif isinstance(value, int):
        if value >= 0:
            builder.UInt(value)
        else:
            builder.Int(value)
    elif isinstance(value, float):
        builder.Float(value, 8)
    elif isinstance(value, str):
        builder.String(value)
    elif isinstance(value, (bytes, bytearray)):
        builder.Blob(value)
    elif isinstance(value, Mapping):
        items = sorted(value.items()) if sort_keys else value.items()
        with builder.Map():
            for key, item in items:
                if not isinstance(key, str):
                    raise TypeError(f"map keys must be strings, got {type(key).__name__}")
                builder.Key(key.encode("utf-8"))
                _add(builder, item, sort_keys)
    elif isinstance(value, (list, tuple)):
        with builder.Vector():
            for item in value:
                _add(builder, item, sort_keys)
    else:
        raise TypeError(f"cannot encode a {type(value).__name__} as a JSON value")


def flex_dumps(value: Any, *, sort_keys: bool = True) -> bytes:
    """Encode a JSON-like value as FlexBuffers, the way the reference serializer does.

    Parameters
    ----------
    value
        None, bool, int, float, str, list/tuple or str-keyed mapping (nested freely).
    sort_keys
        Insert map keys in sorted order (commit/repo metadata).  ``False`` keeps the
        mapping's own order (the repository config, whose keys follow declaration order).
    """
    key = (repr(value), sort_keys) if _plain_json(value) else None
    if key is not None:
        found = _DUMPS_MEMO.get(key)
        if found is not None:
            return found
    builder = _Builder()
    _add(builder, value, sort_keys)
    out = bytes(builder.Finish())
    if key is not None and len(out) <= _MEMO_MAX_BYTES:
        _memoize(_DUMPS_MEMO, key, out)
    return out


# Encoding a small map costs ~60 µs in the pure-Python FlexBuffers builder, and every commit
# re-encodes the same metadata values (the root snapshot's, the repository's).  Values made
# only of builtin JSON types are keyed by their repr, which tells apart everything the
# encoder tells apart (1 / 1.0 / True, list / tuple, key order).
_DUMPS_MEMO: dict[tuple[str, bool], bytes] = {}
_MEMO_SIZE = 4096  # entries of each memo (emptied when full)
_MEMO_MAX_BYTES = 4096  # encodings up to this size: big values are rare and would pin memory


def _memoize(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[key] = value


_SCALARS = (type(None), bool, int, float, str)


def _plain_json(value: Any) -> bool:
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        return all(type(k) is str and _plain_json(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain_json(v) for v in value)
    return False


def _value(ref: flexbuffers.Ref) -> Any:
    if ref.IsNull:
        return None
    if ref.IsBool:
        return ref.AsBool
    if ref.IsMap:
        m = ref.AsMap
        return {
            bytes(k.AsKeyBytes).decode("utf-8"): _value(v)
            for k, v in zip(m.Keys, m.Values, strict=True)
        }
    if ref.IsString or ref.IsKey:
        return bytes(ref.AsStringBytes).decode("utf-8")
    if ref.IsBlob:
        return bytes(ref.AsBlob)
    if ref.IsVector or ref.IsTypedVector or ref.IsFixedTypedVector:
        return [_value(item) for item in ref.AsVector] if ref.IsVector else ref.Value
    if ref.IsInt:
        return ref.AsInt
    if ref.IsFloat:
        return ref.AsFloat
    return ref.Value


def flex_loads(data: bytes | bytearray | memoryview) -> Any:
    """Decode a FlexBuffers buffer into plain Python values (dict/list/str/int/...).

    Raises
    ------
    ValueError
        If the buffer is corrupt (the upstream reader fails with assorted exceptions, even
        ``AssertionError`` or ``RecursionError``; they are all turned into this one).
    """
    key = bytes(data)
    found = _LOADS_MEMO.get(key)
    if found is not None:
        return _fresh_copy(found)
    try:
        value = _value(flexbuffers.GetRoot(bytearray(key)))
    except (
        AssertionError,
        IndexError,
        KeyError,
        OverflowError,
        RecursionError,
        TypeError,
        UnicodeDecodeError,
        struct.error,
    ) as err:
        raise ValueError(f"corrupt FlexBuffers value ({type(err).__name__}: {err})") from None
    if len(key) <= _MEMO_MAX_BYTES and value is not None:
        _memoize(_LOADS_MEMO, key, value)
        return _fresh_copy(value)
    return value


# Decoded values by their bytes: the stock FlexBuffers reader takes ~60 µs for even a tiny
# map, and the same few commit-metadata values come back in every repo object and snapshot.
# Callers get their own copy (containers are mutable); a memo hit costs about 1 µs.
_LOADS_MEMO: dict[bytes, Any] = {}


def _fresh_copy(value: Any) -> Any:
    """A copy of a decoded value whose containers are new (scalars, str, bytes are shared)."""
    kind = type(value)
    if kind is dict:
        return {k: _fresh_copy(v) for k, v in value.items()}
    if kind is list:
        return [_fresh_copy(v) for v in value]
    return value


def msgpack_dumps(value: Any) -> bytes:
    """Encode a JSON-like value as compact MessagePack (spec-1 metadata values)."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def msgpack_loads(data: bytes | bytearray | memoryview) -> Any:
    """Decode MessagePack produced by the reference (or :func:`msgpack_dumps`)."""
    return msgpack.unpackb(bytes(data), raw=False, strict_map_key=False)


def metadata_value_encode(value: Any, spec_version: int) -> bytes:
    """Encode one metadata value for a file of the given spec version."""
    return flex_dumps(value) if spec_version >= 2 else msgpack_dumps(value)


def metadata_value_decode(data: bytes | bytearray | memoryview, spec_version: int) -> Any:
    """Decode one metadata value from a file of the given spec version."""
    return flex_loads(data) if spec_version >= 2 else msgpack_loads(data)
