"""Helpers shared by the backends: key validation and the settings plumbing."""

from __future__ import annotations

import re
from typing import Any

from icechunk._errors import ErrorKind, InvalidInputError
from icechunk.config import StorageConcurrencySettings, StorageRetriesSettings, StorageSettings
from icechunk.storage._abc import Storage

__all__ = [
    "OBJECT_STORE_DEFAULTS",
    "SettingsMixin",
    "bad_mode",
    "check_key",
    "check_prefix",
    "describe_settings",
    "normalize_prefix",
]

# a key segment that is one of our temp-file names (see _local.py); never a valid key
TEMP_NAME = re.compile(r"^\.[0-9a-f]{32}\.tmp$")

#: Reference defaults of object-store backends (API.md §7.5).
OBJECT_STORE_DEFAULTS = StorageSettings(
    concurrency=StorageConcurrencySettings(
        max_concurrent_requests_for_object=18, ideal_concurrent_request_size=12 * 1024 * 1024
    ),
    retries=StorageRetriesSettings(max_tries=10, initial_backoff_ms=100, max_backoff_ms=180_000),
)


def check_key(key: Any) -> str:
    """Return ``key`` if it is a valid storage key.

    Keys are ``/``-separated, relative (no leading ``/``), with no empty, ``.`` or ``..``
    segment, no NUL character, and no segment that looks like one of our temp files.

    Raises
    ------
    InvalidInputError
        (kind ``invalid-key``) naming the key.
    """
    if not isinstance(key, str):
        raise InvalidInputError(f"storage key must be a str, got {type(key).__name__}", ErrorKind.INVALID_KEY)
    if not key or "\x00" in key:
        raise InvalidInputError(f"invalid storage key {key!r}", ErrorKind.INVALID_KEY)
    for segment in key.split("/"):
        if segment in ("", ".", "..") or TEMP_NAME.match(segment):
            raise InvalidInputError(
                f"invalid storage key {key!r}: empty, '.', '..' or reserved path segment",
                ErrorKind.INVALID_KEY,
            )
    return key


def check_prefix(prefix: Any) -> str:
    """Validate a listing prefix (``""`` or a key prefix, possibly ending in ``/``)."""
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        raise InvalidInputError(
            f"listing prefix must be a str, got {type(prefix).__name__}", ErrorKind.BAD_KEY_PREFIX
        )
    if prefix.startswith("/") or "//" in prefix or "\x00" in prefix:
        raise InvalidInputError(f"invalid listing prefix {prefix!r}", ErrorKind.BAD_KEY_PREFIX)
    return prefix


def normalize_prefix(prefix: str | None) -> str:
    """A storage root prefix without leading or trailing ``/`` (``""`` for the root)."""
    return (prefix or "").strip("/")


class SettingsMixin:
    """Keeps the user's settings and merges them over :meth:`Storage.default_settings`."""

    _user_settings: StorageSettings | None

    def default_settings(self) -> StorageSettings:
        return OBJECT_STORE_DEFAULTS.merge(None)

    @property
    def settings(self) -> StorageSettings:
        return self.default_settings().merge(self._user_settings)

    def _check_settings(self, settings: StorageSettings | None) -> StorageSettings | None:
        if settings is not None and not isinstance(settings, StorageSettings):
            raise InvalidInputError(
                f"settings must be a StorageSettings, got {type(settings).__name__}",
                ErrorKind.STORAGE_CONFIG,
            )
        return settings


def bad_mode(mode: object) -> InvalidInputError:
    """The error for a ``mode`` argument that is not a put mode."""
    return InvalidInputError(
        f"put mode must be 'create', 'overwrite' or a VersionToken, got {mode!r}",
        ErrorKind.STORAGE_CONFIG,
    )


def describe_settings(storage: Storage) -> str:
    """Short settings summary for reprs (only what the user set)."""
    user = getattr(storage, "_user_settings", None)
    return "" if user is None else f", settings={user!r}"
