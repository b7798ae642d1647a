"""Validation and resolution of byte ranges (shared by every backend)."""

from __future__ import annotations

from icechunk._errors import ErrorKind, InvalidInputError
from icechunk.storage._abc import ByteRange, OffsetRange, RangeRequest, SuffixRange

__all__ = ["check_range", "resolve_range"]


def _invalid(message: str) -> InvalidInputError:
    return InvalidInputError(message, ErrorKind.INVALID_BYTE_RANGE)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_range(byte_range: ByteRange) -> None:
    """Reject ranges that are invalid whatever the object's size.

    Raises
    ------
    InvalidInputError
        (kind ``invalid-byte-range``) for negative numbers, ``end < start`` or a value that
        is not a byte range.
    """
    match byte_range:
        case RangeRequest(start=start, end=end):
            if not _is_int(start) or not _is_int(end):
                raise _invalid(f"byte range bounds must be integers: {byte_range!r}")
            if start < 0 or end < start:
                raise _invalid(f"invalid byte range {byte_range!r}: need 0 <= start <= end")
        case OffsetRange(offset=offset):
            if not _is_int(offset) or offset < 0:
                raise _invalid(f"invalid byte range {byte_range!r}: offset must be >= 0")
        case SuffixRange(suffix=suffix):
            if not _is_int(suffix) or suffix < 0:
                raise _invalid(f"invalid byte range {byte_range!r}: suffix must be >= 0")
        case _:
            raise _invalid(f"not a byte range: {byte_range!r}")


def resolve_range(byte_range: ByteRange, size: int) -> tuple[int, int]:
    """``(start, end)`` of ``byte_range`` in an object of ``size`` bytes.

    An ``end`` past the object is truncated and a suffix longer than the object means the
    whole object; a start exactly at the end gives an empty range.

    Raises
    ------
    InvalidInputError
        (kind ``invalid-byte-range``) when the range is invalid or starts past the end.
    """
    check_range(byte_range)
    match byte_range:
        case RangeRequest(start=start, end=end):
            pass
        case OffsetRange(offset=offset):
            start, end = offset, size
        case SuffixRange(suffix=suffix):
            start, end = max(0, size - suffix), size
    if start > size:
        raise _invalid(f"byte range {byte_range!r} starts past the end of a {size}-byte object")
    return start, min(end, size)
