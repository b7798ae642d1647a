"""Object ids (12-byte snapshot/manifest/chunk ids, 8-byte node ids) and Crockford base32.

Ids are ``bytes`` subclasses: they hash and compare like their raw bytes (so they sort in the
same order as their encoded names) and ``str(id)`` gives the Crockford base32 form used for
file names and ref JSON.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np

from icechunk._errors import ErrorKind, InvalidInputError

__all__ = [
    "ChunkId",
    "ManifestId",
    "NodeId",
    "ObjectId",
    "SnapshotId",
    "INITIAL_SNAPSHOT_ID",
    "crockford_decode",
    "crockford_encode",
    "crockford_encode_ids12",
]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE: dict[str, int] = {c: i for i, c in enumerate(_ALPHABET)}
# The reference decoder is lenient: lower case, and I/L -> 1, O -> 0.
_DECODE.update({c.lower(): i for c, i in list(_DECODE.items())})
_DECODE.update({"I": 1, "i": 1, "L": 1, "l": 1, "O": 0, "o": 0})


# two base32 digits (10 bits) per table lookup
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def crockford_encode(raw: bytes) -> str:
    """Encode bytes as upper-case Crockford base32, zero-padding the last 5-bit group."""
    p = _PAIRS
    if len(raw) == 12:  # snapshot, manifest and chunk ids: 96 bits + 4 padding = 10 pairs
        v = int.from_bytes(raw, "big") << 4
        return (
            p[v >> 90] + p[(v >> 80) & 1023] + p[(v >> 70) & 1023] + p[(v >> 60) & 1023]
            + p[(v >> 50) & 1023] + p[(v >> 40) & 1023] + p[(v >> 30) & 1023]
            + p[(v >> 20) & 1023] + p[(v >> 10) & 1023] + p[v & 1023]
        )
    nbits = len(raw) * 8
    nchars = -(-nbits // 5)
    npairs = -(-nchars // 2)
    v = int.from_bytes(raw, "big") << (npairs * 10 - nbits)
    text = "".join(p[(v >> (10 * (npairs - 1 - k))) & 1023] for k in range(npairs))
    return text[:nchars]


_ALPHABET_BYTES = np.frombuffer(_ALPHABET.encode(), dtype=np.uint8)
_BIT_WEIGHTS = np.array([16, 8, 4, 2, 1], dtype=np.uint8)


def crockford_encode_ids12(ids: Sequence[bytes]) -> list[str]:
    """:func:`crockford_encode` of many 12-byte ids at once (numpy; for long histories)."""
    if not ids:
        return []
    raw = np.frombuffer(b"".join(ids), dtype=np.uint8)
    if raw.shape[0] != 12 * len(ids):
        raise ValueError("every id must have 12 bytes")
    bits = np.zeros((len(ids), 100), dtype=np.uint8)  # 96 bits + 4 zero bits of padding
    bits[:, :96] = np.unpackbits(raw.reshape(-1, 12), axis=1)
    digits = bits.reshape(-1, 20, 5) @ _BIT_WEIGHTS
    text: list[str] = _ALPHABET_BYTES[digits].view("S20").ravel().astype("U20").tolist()
    return text


def _crockford_encode_slow(raw: bytes) -> str:
    """The arithmetic definition of :func:`crockford_encode` (kept for the tests)."""
    nbits = len(raw) * 8
    nchars = -(-nbits // 5)
    value = int.from_bytes(raw, "big") << (nchars * 5 - nbits)
    out = []
    for _ in range(nchars):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def crockford_decode(text: str) -> bytes:
    """Decode Crockford base32 text; keeps the first ``floor(5 * len / 8)`` bytes.

    Raises
    ------
    ValueError
        If a character is not in the (lenient) Crockford alphabet.
    """
    text = text.rstrip("=")
    value = 0
    for ch in text:
        digit = _DECODE.get(ch)
        if digit is None:
            raise ValueError(f"invalid Crockford base32 character {ch!r} in {text!r}")
        value = (value << 5) | digit
    nbits = len(text) * 5
    nbytes = nbits // 8
    return (value >> (nbits - nbytes * 8)).to_bytes(nbytes, "big")


# Ids come from a generator seeded from the OS (and reseeded in a forked child, which must
# not repeat its parent's ids), not from os.urandom per id: urandom releases the GIL, and
# taking it back while codec or writer threads run costs ~90 µs per chunk write instead of
# under 1 µs.  Ids must be unique, not secret; 96 bits from independent 256-bit seeds are.
_GENERATOR = random.Random(os.urandom(32))
_RANDOM_BYTES = _GENERATOR.randbytes


def _reseed() -> None:
    _GENERATOR.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reseed)


class ObjectId(bytes):
    """Base class of fixed-size ids."""

    SIZE: ClassVar[int] = 12
    KIND: ClassVar[str] = "object"

    def __new__(cls, raw: bytes | bytearray | memoryview) -> Self:
        raw = bytes(raw)
        if len(raw) != cls.SIZE:
            raise InvalidInputError(
                f"a {cls.KIND} id has {cls.SIZE} bytes, got {len(raw)}",
                ErrorKind.INVALID_SNAPSHOT_ID if cls is SnapshotId else ErrorKind.INVALID_KEY,
            )
        return super().__new__(cls, raw)

    @classmethod
    def random(cls) -> Self:
        """A fresh random id."""
        return cls(_RANDOM_BYTES(cls.SIZE))

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse the Crockford base32 form.

        Raises
        ------
        InvalidInputError
            If ``text`` is not the encoding of an id of this size.
        """
        kind = ErrorKind.INVALID_SNAPSHOT_ID if cls is SnapshotId else ErrorKind.INVALID_KEY
        if not isinstance(text, str):
            raise InvalidInputError(f"{cls.KIND} id must be a string, got {type(text).__name__}", kind)
        expected_len = -(-cls.SIZE * 8 // 5)
        try:
            raw = crockford_decode(text)
        except ValueError:
            raw = b""
        if len(text) != expected_len or len(raw) != cls.SIZE:
            raise InvalidInputError(f"invalid {cls.KIND} id: {text!r}", kind)
        return cls(raw)

    def __str__(self) -> str:
        return crockford_encode(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({crockford_encode(self)!r})"

    def __reduce__(self) -> tuple[type[Self], tuple[bytes]]:
        return (type(self), (bytes(self),))


class SnapshotId(ObjectId):
    """12-byte snapshot id (also the name of the snapshot's transaction log)."""

    KIND = "snapshot"


class ManifestId(ObjectId):
    """12-byte manifest id."""

    KIND = "manifest"


class ChunkId(ObjectId):
    """12-byte id of a chunk object under ``chunks/``."""

    KIND = "chunk"


class NodeId(ObjectId):
    """8-byte id of a group or array, stable across metadata updates and moves."""

    SIZE = 8
    KIND = "node"


INITIAL_SNAPSHOT_ID = SnapshotId(bytes.fromhex("0b1cc8d6787580f0e33a6534"))
"""The fixed id of every repository's first snapshot (``1CECHNKREP0F1RSTCMT0``)."""
