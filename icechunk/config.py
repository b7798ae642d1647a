"""Repository and storage configuration (a leaf module: stdlib only).

Every field is optional; ``None`` means "use the built-in default", and getters return
``None`` for unset fields.  Configs merge in layers (caller ← persisted ← backend defaults)
with :meth:`merge`, where set fields of the argument win and nested configs merge
recursively.  ``to_serde`` / ``from_serde`` convert to and from the plain value the reference
serializes into the repo-info FlexBuffer and the spec-1 ``config.yaml`` (FORMAT.md §4.4).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

__all__ = [
    "CachingConfig",
    "ChecksumAlgorithm",
    "CompressionAlgorithm",
    "CompressionConfig",
    "FeatureFlag",
    "ManifestConfig",
    "ManifestPreloadCondition",
    "ManifestPreloadConfig",
    "ManifestSplitCondition",
    "ManifestSplitDimCondition",
    "ManifestSplittingConfig",
    "ManifestVirtualChunkLocationCompressionConfig",
    "ObjectStoreConfig",
    "RepoUpdateRetryConfig",
    "RepositoryConfig",
    "S3Options",
    "StorageConcurrencySettings",
    "StorageRetriesSettings",
    "StorageSettings",
    "StorageTimeoutSettings",
    "VirtualChunkContainer",
    "initialize_logs",
    "set_logs_filter",
    "shutdown_telemetry",
]

C = TypeVar("C", bound="_Config")


class _Config:
    """Shared behaviour of the config dataclasses: repr, layered merge, serde."""

    _SERDE_KEYS: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"icechunk.config.{type(self).__qualname__}({inner})"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(repr(self))}</pre>"

    def merge(self: C, other: C | None) -> C:
        """A new config: ``other``'s set fields win; nested configs merge recursively."""
        if other is None:
            return dataclasses.replace(self)  # type: ignore[type-var]
        values = {}
        for f in fields(self):  # type: ignore[arg-type]
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if theirs is None:
                values[f.name] = mine
            elif isinstance(mine, _Config) and isinstance(theirs, _Config):
                values[f.name] = mine.merge(theirs)
            elif isinstance(mine, dict) and isinstance(theirs, dict):
                values[f.name] = {**mine, **theirs}
            else:
                values[f.name] = theirs
        return type(self)(**values)

    def to_serde(self) -> dict[str, Any]:
        """The plain value the reference serializer writes (every field, None as null)."""
        return {f.name: _to_serde(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_serde(cls: type[C], value: Mapping[str, Any] | None) -> C | None:
        """Build from a decoded serde value; unknown keys are ignored, missing ones unset."""
        if value is None:
            return None
        kwargs: dict[str, Any] = {}
        hints = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        for name in hints:
            if name in value and value[name] is not None:
                kwargs[name] = cls._field_from_serde(name, value[name])
        return cls(**kwargs)

    @classmethod
    def _field_from_serde(cls, name: str, value: Any) -> Any:
        return value


def _to_serde(value: Any) -> Any:
    if isinstance(value, _Config):
        return value.to_serde()
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, dict):
        return {k: _to_serde(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_serde(v) for v in value]
    return value


# ---- storage settings -----------------------------------------------------------------------


class ChecksumAlgorithm(enum.Enum):
    """Checksum the S3 client attaches to uploads."""

    Crc32 = 0
    Crc32c = 1
    Crc64Nvme = 2
    Sha1 = 3
    Sha256 = 4


@dataclass(eq=True, repr=False)
class StorageConcurrencySettings(_Config):
    """Request splitting for large objects (defaults: 18 requests, 12 MiB parts)."""

    max_concurrent_requests_for_object: int | None = None
    ideal_concurrent_request_size: int | None = None


@dataclass(eq=True, repr=False)
class StorageRetriesSettings(_Config):
    """Retries of failed storage requests (defaults: 10 tries, 100 ms .. 180 s backoff)."""

    max_tries: int | None = None
    initial_backoff_ms: int | None = None
    max_backoff_ms: int | None = None


@dataclass(eq=True, repr=False)
class StorageTimeoutSettings(_Config):
    """Client timeouts in milliseconds (None: the client's default)."""

    connect_timeout_ms: int | None = None
    read_timeout_ms: int | None = None
    operation_timeout_ms: int | None = None
    operation_attempt_timeout_ms: int | None = None


@dataclass(eq=True, repr=False)
class StorageSettings(_Config):
    """Settings of a storage backend; unset fields take the backend's defaults."""

    concurrency: StorageConcurrencySettings | None = None
    retries: StorageRetriesSettings | None = None
    unsafe_use_conditional_create: bool | None = None
    unsafe_use_conditional_update: bool | None = None
    unsafe_use_metadata: bool | None = None
    storage_class: str | None = None
    metadata_storage_class: str | None = None
    chunks_storage_class: str | None = None
    minimum_size_for_multipart_upload: int | None = None
    timeouts: StorageTimeoutSettings | None = None

    @classmethod
    def _field_from_serde(cls, name: str, value: Any) -> Any:
        sub: Any = {
            "concurrency": StorageConcurrencySettings,
            "retries": StorageRetriesSettings,
            "timeouts": StorageTimeoutSettings,
        }.get(name)
        return sub.from_serde(value) if sub else value


@dataclass(eq=True, repr=False)
class RepoUpdateRetryConfig(_Config):
    """Retries of the optimistic repo-info update loop (defaults: 100 tries, 50 ms .. 30 s)."""

    default: StorageRetriesSettings | None = None

    @classmethod
    def _field_from_serde(cls, name: str, value: Any) -> Any:
        return StorageRetriesSettings.from_serde(value)


# ---- object stores (virtual chunk containers) ------------------------------------------------


@dataclass(eq=True, repr=False)
class S3Options(_Config):
    """How to reach an S3 (or S3-compatible) endpoint."""

    region: str | None = None
    endpoint_url: str | None = None
    allow_http: bool = False
    anonymous: bool = False
    force_path_style: bool = False
    network_stream_timeout_seconds: int | None = None
    requester_pays: bool = False
    checksum_algorithm: ChecksumAlgorithm | None = None

    def to_serde(self) -> dict[str, Any]:
        value = super().to_serde()
        if self.checksum_algorithm is not None:
            value["checksum_algorithm"] = self.checksum_algorithm.name
        return value

    @classmethod
    def _field_from_serde(cls, name: str, value: Any) -> Any:
        if name == "checksum_algorithm":
            return _enum_from_name(ChecksumAlgorithm, value)
        return value


def _enum_from_name(enum_type: type[enum.Enum], value: Any) -> Any:
    for member in enum_type:
        if member.name.lower() == str(value).lower().replace("_", ""):
            return member
    return None


class ObjectStoreConfig:
    """Where virtual chunks live: a tagged union of nested classes."""

    @dataclass(frozen=True, repr=False)
    class InMemory(_Config):
        """Volatile in-memory store (tests)."""

        def to_serde(self) -> Any:
            return "in_memory"

    @dataclass(frozen=True, repr=False)
    class LocalFileSystem(_Config):
        """Files under a local directory."""

        path: str = ""

        def to_serde(self) -> Any:
            return {"local_file_system": self.path}

    @dataclass(frozen=True, repr=False)
    class S3(_Config):
        """Amazon S3."""

        options: S3Options = field(default_factory=S3Options)

        def to_serde(self) -> Any:
            return {"s3": self.options.to_serde()}

    @dataclass(frozen=True, repr=False)
    class S3Compatible(_Config):
        """An S3-compatible endpoint (MinIO, Ceph, moto, ...)."""

        options: S3Options = field(default_factory=S3Options)

        def to_serde(self) -> Any:
            return {"s3_compatible": self.options.to_serde()}

    @dataclass(frozen=True, repr=False)
    class Tigris(_Config):
        """Tigris object storage."""

        opts: S3Options = field(default_factory=S3Options)

        def to_serde(self) -> Any:
            return {"tigris": self.opts.to_serde()}

    @dataclass(frozen=True, repr=False)
    class Gcs(_Config):
        """Google Cloud Storage."""

        opts: Mapping[str, str] | None = None

        def to_serde(self) -> Any:
            return {"gcs": dict(self.opts or {})}

    @dataclass(frozen=True, repr=False)
    class Azure(_Config):
        """Azure Blob Storage."""

        opts: Mapping[str, str] | None = None

        def to_serde(self) -> Any:
            return {"azure": dict(self.opts or {})}

    @dataclass(frozen=True, repr=False)
    class Http(_Config):
        """Plain HTTP(S) (read-only)."""

        opts: Mapping[str, str] | None = None
        headers: Mapping[str, str] | None = None

        def to_serde(self) -> Any:
            return {"http": dict(self.opts or {})}

    @staticmethod
    def from_serde(value: Any) -> Any:
        """Decode the externally tagged serde form; None for unknown variants."""
        if value == "in_memory":
            return ObjectStoreConfig.InMemory()
        if not isinstance(value, Mapping) or len(value) != 1:
            return None
        ((tag, body),) = value.items()
        if tag == "local_file_system":
            return ObjectStoreConfig.LocalFileSystem(str(body or ""))
        if tag in ("s3", "s3_compatible", "tigris"):
            opts = S3Options.from_serde(body or {}) or S3Options()
            return {
                "s3": ObjectStoreConfig.S3,
                "s3_compatible": ObjectStoreConfig.S3Compatible,
                "tigris": ObjectStoreConfig.Tigris,
            }[tag](opts)
        if tag in ("gcs", "azure", "http"):
            opts_map = {str(k): str(v) for k, v in (body or {}).items() if v is not None}
            return {
                "gcs": ObjectStoreConfig.Gcs,
                "azure": ObjectStoreConfig.Azure,
                "http": ObjectStoreConfig.Http,
            }[tag](opts_map)
        return None


AnyObjectStoreConfig = (
    ObjectStoreConfig.InMemory
    | ObjectStoreConfig.LocalFileSystem
    | ObjectStoreConfig.S3
    | ObjectStoreConfig.S3Compatible
    | ObjectStoreConfig.Gcs
    | ObjectStoreConfig.Azure
    | ObjectStoreConfig.Tigris
)

# url schemes each store kind accepts for a container prefix (API.md §9)
_SCHEMES: dict[type, tuple[str, ...]] = {
    ObjectStoreConfig.S3: ("s3",),
    ObjectStoreConfig.S3Compatible: ("s3",),
    ObjectStoreConfig.Tigris: ("s3", "tigris"),
    ObjectStoreConfig.Gcs: ("gs", "gcs"),
    ObjectStoreConfig.Azure: ("az", "azure", "abfs"),
    ObjectStoreConfig.Http: ("http", "https"),
    ObjectStoreConfig.LocalFileSystem: ("file",),
    ObjectStoreConfig.InMemory: ("memory",),
}


@dataclass(eq=True, repr=False)
class VirtualChunkContainer(_Config):
    """A place virtual chunk refs may point into: a URL prefix and how to reach it.

    Parameters
    ----------
    url_prefix
        Absolute URL prefix ending in ``/`` (``s3://bucket/data/``, ``file:///data/``, ...).
    store
        An ``ObjectStoreConfig.*`` describing the store behind the prefix.
    name
        Optional name; refs may then use ``vcc://<name>/<relative path>`` locations.
    """

    url_prefix: str
    store: Any
    name: str | None = None

    def validate(self) -> None:
        """Check the prefix/store/name rules of API.md §9.

        Raises
        ------
        ValueError
            Describing the first rule that does not hold.
        """
        prefix: object = self.url_prefix
        if not isinstance(prefix, str) or not prefix.endswith("/"):
            raise ValueError(f"virtual chunk container url_prefix must end with '/': {prefix!r}")
        match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", prefix)
        if not match:
            raise ValueError(f"virtual chunk container url_prefix is not a URL: {prefix!r}")
        scheme, rest = match.group(1).lower(), match.group(2)
        allowed = _SCHEMES.get(type(self.store))
        if allowed is None:
            raise ValueError(f"unsupported virtual chunk container store {self.store!r}")
        if scheme not in allowed:
            raise ValueError(
                f"url scheme {scheme!r} does not fit store {type(self.store).__name__}; "
                f"expected one of {', '.join(s + '://' for s in allowed)}"
            )
        if scheme == "file":
            segments = rest.split("/")
            if not rest.startswith("/") or any(s in (".", "..") for s in segments):
                raise ValueError(f"file:// prefixes must be absolute and canonical: {prefix!r}")
        elif scheme != "memory" and not rest.split("/", 1)[0]:
            raise ValueError(f"url prefix must include a host or bucket: {prefix!r}")
        if self.name is not None and (not self.name or "/" in self.name):
            raise ValueError(f"container name must be non-empty and contain no '/': {self.name!r}")

    def to_serde(self) -> dict[str, Any]:
        return {"name": self.name, "url_prefix": self.url_prefix, "store": self.store.to_serde()}

    @classmethod
    def from_serde(cls, value: Mapping[str, Any] | None) -> VirtualChunkContainer | None:
        if not value or value.get("url_prefix") is None:
            return None
        store = ObjectStoreConfig.from_serde(value.get("store"))
        if store is None:
            return None
        return cls(url_prefix=str(value["url_prefix"]), store=store, name=value.get("name"))


# ---- caching, compression -------------------------------------------------------------------


@dataclass(eq=True, repr=False)
class CachingConfig(_Config):
    """In-memory cache sizes (defaults: 500k nodes, 15M chunk refs, 0, 0, 0)."""

    num_snapshot_nodes: int | None = None
    num_chunk_refs: int | None = None
    num_transaction_changes: int | None = None
    num_bytes_attributes: int | None = None
    num_bytes_chunks: int | None = None


class CompressionAlgorithm(enum.Enum):
    """Compression of metadata files (only zstd exists)."""

    Zstd = 0

    @staticmethod
    def default() -> CompressionAlgorithm:
        return CompressionAlgorithm.Zstd


@dataclass(eq=True, repr=False)
class CompressionConfig(_Config):
    """Compression of metadata files (defaults: zstd, level 3)."""

    algorithm: CompressionAlgorithm | None = None
    level: int | None = None

    @staticmethod
    def default() -> CompressionConfig:
        return CompressionConfig()

    @classmethod
    def _field_from_serde(cls, name: str, value: Any) -> Any:
        return CompressionAlgorithm.Zstd if name == "algorithm" else value


# ---- manifest conditions --------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _Condition:
    """A structural boolean condition on arrays (compared and hashed by structure)."""

    op: str
    args: tuple[Any, ...] = ()

    def __repr__(self) -> str:
        inner = ", ".join(repr(a) for a in self.args)
        return f"icechunk.{type(self).__name__}.{self.op}({inner})"

    def __and__(self: Any, other: Any) -> Any:
        return type(self)("and", (self, other))

    def __or__(self: Any, other: Any) -> Any:
        return type(self)("or", (self, other))


class ManifestSplitCondition(_Condition):
    """Which arrays a manifest-splitting rule applies to."""

    @staticmethod
    def path_matches(regex: str) -> ManifestSplitCondition:
        return ManifestSplitCondition("path_matches", (regex,))

    @staticmethod
    def name_matches(regex: str) -> ManifestSplitCondition:
        return ManifestSplitCondition("name_matches", (regex,))

    @staticmethod
    def AnyArray() -> ManifestSplitCondition:
        return ManifestSplitCondition("any_array")

    @staticmethod
    def and_conditions(conditions: list[ManifestSplitCondition]) -> ManifestSplitCondition:
        return ManifestSplitCondition("and", tuple(conditions))

    @staticmethod
    def or_conditions(conditions: list[ManifestSplitCondition]) -> ManifestSplitCondition:
        return ManifestSplitCondition("or", tuple(conditions))

    def matches(self, path: str) -> bool:
        """Whether the array at absolute ``path`` satisfies the condition."""
        if self.op == "path_matches":
            return re.search(self.args[0], path) is not None
        if self.op == "name_matches":
            return re.search(self.args[0], path.rsplit("/", 1)[-1]) is not None
        if self.op == "any_array":
            return True
        if self.op == "and":
            return all(c.matches(path) for c in self.args)
        if self.op == "or":
            return any(c.matches(path) for c in self.args)
        return False

    def to_serde(self) -> Any:
        if self.op in ("path_matches", "name_matches"):
            return {self.op: {"regex": self.args[0]}}
        if self.op in ("and", "or"):
            return {self.op: [c.to_serde() for c in self.args]}
        return "any_array"

    @staticmethod
    def from_serde(value: Any) -> ManifestSplitCondition:
        if value == "any_array":
            return ManifestSplitCondition.AnyArray()
        ((tag, body),) = value.items()
        if tag in ("path_matches", "name_matches"):
            return ManifestSplitCondition(tag, (body["regex"],))
        return ManifestSplitCondition(tag, tuple(ManifestSplitCondition.from_serde(c) for c in body))


class ManifestSplitDimCondition:
    """Which dimension of an array a split size applies to."""

    # note: the nested class ``Any`` shadows ``typing.Any`` inside this class body
    @dataclass(frozen=True)
    class Axis:
        axis: int

        def to_serde(self) -> object:
            return {"Axis": self.axis}

    @dataclass(frozen=True)
    class DimensionName:
        regex: str

        def to_serde(self) -> object:
            return {"DimensionName": self.regex}

    @dataclass(frozen=True)
    class Any:
        def to_serde(self) -> object:
            return "Any"

    @staticmethod
    def from_serde(value: object) -> ManifestSplitDimCondition.Axis | ManifestSplitDimCondition.DimensionName | ManifestSplitDimCondition.Any:
        if value == "Any" or not isinstance(value, Mapping):
            return ManifestSplitDimCondition.Any()
        ((tag, body),) = value.items()
        if tag == "Axis":
            return ManifestSplitDimCondition.Axis(int(body))
        return ManifestSplitDimCondition.DimensionName(str(body))


SplitSizes = tuple[tuple[ManifestSplitCondition, tuple[tuple[Any, int], ...]], ...]


@dataclass(eq=True, repr=False)
class ManifestSplittingConfig(_Config):
    """Split each array's chunk refs into several manifests (default: one per array).

    ``split_sizes`` is an ordered tuple of ``(array condition, ((dim condition, size), ...))``;
    the first matching rule wins, per dimension the first matching dim condition wins.
    """

    split_sizes: SplitSizes | None = None

    @staticmethod
    def from_dict(mapping: Mapping[ManifestSplitCondition, Mapping[Any, int]]) -> ManifestSplittingConfig:
        """Build from insertion-ordered ``{condition: {dim_condition: size}}``."""
        return ManifestSplittingConfig(
            tuple((cond, tuple(dims.items())) for cond, dims in mapping.items())
        )

    def to_dict(self) -> dict[ManifestSplitCondition, dict[Any, int]]:
        return {cond: dict(dims) for cond, dims in (self.split_sizes or ())}

    def to_serde(self) -> dict[str, Any]:
        if self.split_sizes is None:
            return {"split_sizes": None}
        return {
            "split_sizes": [
                [cond.to_serde(), [{"condition": d.to_serde(), "num_chunks": n} for d, n in dims]]
                for cond, dims in self.split_sizes
            ]
        }

    @classmethod
    def from_serde(cls, value: Mapping[str, Any] | None) -> ManifestSplittingConfig | None:
        if value is None:
            return None
        sizes = value.get("split_sizes")
        if sizes is None:
            return cls()
        return cls(
            tuple(
                (
                    ManifestSplitCondition.from_serde(cond),
                    tuple(
                        (ManifestSplitDimCondition.from_serde(d["condition"]), int(d["num_chunks"]))
                        for d in dims
                    ),
                )
                for cond, dims in sizes
            )
        )


class ManifestPreloadCondition(_Condition):
    """Which arrays' manifests are loaded eagerly when a session starts."""

    @staticmethod
    def path_matches(regex: str) -> ManifestPreloadCondition:
        return ManifestPreloadCondition("path_matches", (regex,))

    @staticmethod
    def name_matches(regex: str) -> ManifestPreloadCondition:
        return ManifestPreloadCondition("name_matches", (regex,))

    @staticmethod
    def num_refs(from_refs: int | None, to_refs: int | None) -> ManifestPreloadCondition:
        return ManifestPreloadCondition("num_refs", (from_refs, to_refs))

    @staticmethod
    def true() -> ManifestPreloadCondition:
        return ManifestPreloadCondition("true")

    @staticmethod
    def false() -> ManifestPreloadCondition:
        return ManifestPreloadCondition("false")

    @staticmethod
    def and_conditions(conditions: list[ManifestPreloadCondition]) -> ManifestPreloadCondition:
        return ManifestPreloadCondition("and", tuple(conditions))

    @staticmethod
    def or_conditions(conditions: list[ManifestPreloadCondition]) -> ManifestPreloadCondition:
        return ManifestPreloadCondition("or", tuple(conditions))

    def matches(self, path: str, num_refs: int) -> bool:
        """Whether an array at ``path`` whose manifest has ``num_refs`` refs qualifies."""
        if self.op == "path_matches":
            return re.search(self.args[0], path) is not None
        if self.op == "name_matches":
            return re.search(self.args[0], path.rsplit("/", 1)[-1]) is not None
        if self.op == "num_refs":
            lo, hi = self.args
            return (lo is None or num_refs >= lo) and (hi is None or num_refs < hi)
        if self.op == "and":
            return all(c.matches(path, num_refs) for c in self.args)
        if self.op == "or":
            return any(c.matches(path, num_refs) for c in self.args)
        return self.op == "true"

    def to_serde(self) -> Any:
        if self.op in ("path_matches", "name_matches"):
            return {self.op: {"regex": self.args[0]}}
        if self.op == "num_refs":
            return {"num_refs": {"from": self.args[0], "to": self.args[1]}}
        if self.op in ("and", "or"):
            return {self.op: [c.to_serde() for c in self.args]}
        return self.op

    @staticmethod
    def from_serde(value: Any) -> ManifestPreloadCondition:
        if isinstance(value, str):
            return ManifestPreloadCondition(value.lower())
        ((tag, body),) = value.items()
        if tag in ("path_matches", "name_matches"):
            return ManifestPreloadCondition(tag, (body["regex"],))
        if tag == "num_refs":
            return ManifestPreloadCondition("num_refs", (body.get("from"), body.get("to")))
        return ManifestPreloadCondition(
            tag, tuple(ManifestPreloadCondition.from_serde(c) for c in body)
        )


@dataclass(eq=True, repr=False)
class ManifestPreloadConfig(_Config):
    """Eager manifest loading when sessions start (defaults: 10 000 refs, 50 arrays)."""

    max_total_refs: int | None = None
    preload_if: ManifestPreloadCondition | None = None
    max_arrays_to_scan: int | None = None

    def to_serde(self) -> dict[str, Any]:
        return {
            "max_total_refs": self.max_total_refs,
            "preload_if": self.preload_if.to_serde() if self.preload_if else None,
            "max_arrays_to_scan": self.max_arrays_to_scan,
        }

    @classmethod
    def _field_from_serde(cls, name: str, value: Any) -> Any:
        return ManifestPreloadCondition.from_serde(value) if name == "preload_if" else value


@dataclass(eq=True, repr=False)
class ManifestVirtualChunkLocationCompressionConfig(_Config):
    """zstd-dictionary compression of virtual chunk locations (defaults 1000, 100, 2048, 3)."""

    min_num_chunks: int | None = None
    dictionary_max_training_samples: int | None = field(default=None, kw_only=True)
    dictionary_max_size_bytes: int | None = field(default=None, kw_only=True)
    compression_level: int | None = field(default=None, kw_only=True)


@dataclass(eq=True, repr=False)
class ManifestConfig(_Config):
    """Manifest preloading, splitting and location compression."""

    preload: ManifestPreloadConfig | None = None
    splitting: ManifestSplittingConfig | None = None
    virtual_chunk_location_compression: ManifestVirtualChunkLocationCompressionConfig | None = None
    max_concurrent_manifest_fetches_during_commit: int | None = None

    @classmethod
    def _field_from_serde(cls, name: str, value: Any) -> Any:
        sub: Any = {
            "preload": ManifestPreloadConfig,
            "splitting": ManifestSplittingConfig,
            "virtual_chunk_location_compression": ManifestVirtualChunkLocationCompressionConfig,
        }.get(name)
        return sub.from_serde(value) if sub else value


# ---- the repository config ------------------------------------------------------------------

_log = logging.getLogger("icechunk")


@dataclass(eq=True, repr=False)
class RepositoryConfig(_Config):
    """Configuration of a repository; every field optional (None = default).

    Effective defaults: inline threshold 512 bytes, 10 concurrent partial reads, zstd level 3,
    256 concurrent requests, repo-update retries 100 / 50 ms / 30 s, 1000 ops-log entries per
    repo-info file.
    """

    inline_chunk_threshold_bytes: int | None = None
    get_partial_values_concurrency: int | None = None
    compression: CompressionConfig | None = None
    max_concurrent_requests: int | None = None
    caching: CachingConfig | None = None
    storage: StorageSettings | None = None
    virtual_chunk_containers: dict[str, VirtualChunkContainer] | None = None
    manifest: ManifestConfig | None = None
    repo_update_retries: RepoUpdateRetryConfig | None = None
    num_updates_per_repo_info_file: int | None = None

    def __post_init__(self) -> None:
        if self.virtual_chunk_containers is not None:
            containers = dict(self.virtual_chunk_containers)
            self.virtual_chunk_containers = None
            for cont in containers.values():
                self.set_virtual_chunk_container(cont)

    @staticmethod
    def default() -> RepositoryConfig:
        """A config with every field unset."""
        return RepositoryConfig()

    def get_virtual_chunk_container(self, name: str) -> VirtualChunkContainer | None:
        """The container stored under ``name`` (which is matched against url prefixes)."""
        return (self.virtual_chunk_containers or {}).get(name)

    def set_virtual_chunk_container(self, cont: VirtualChunkContainer) -> None:
        """Add or replace a container (keyed by url prefix; a same-named one is removed).

        Raises
        ------
        ValueError
            If the container is invalid (see :meth:`VirtualChunkContainer.validate`).
        """
        cont.validate()
        containers = dict(self.virtual_chunk_containers or {})
        if cont.name is not None:
            containers = {k: c for k, c in containers.items() if c.name != cont.name}
        containers[cont.url_prefix] = cont
        self.virtual_chunk_containers = containers

    def clear_virtual_chunk_containers(self) -> None:
        """Remove every virtual chunk container."""
        self.virtual_chunk_containers = None

    def to_serde(self) -> dict[str, Any]:
        value = super().to_serde()
        if self.virtual_chunk_containers is not None:
            value["virtual_chunk_containers"] = {
                k: c.to_serde() for k, c in self.virtual_chunk_containers.items()
            }
        value["previous_file"] = None
        return value

    @classmethod
    def _field_from_serde(cls, name: str, value: Any) -> Any:
        sub: Any = {
            "compression": CompressionConfig,
            "caching": CachingConfig,
            "storage": StorageSettings,
            "manifest": ManifestConfig,
            "repo_update_retries": RepoUpdateRetryConfig,
        }.get(name)
        if sub is not None:
            return sub.from_serde(value)
        if name == "virtual_chunk_containers":
            return _containers_from_serde(value)
        return value


def _containers_from_serde(value: Mapping[str, Any]) -> dict[str, VirtualChunkContainer] | None:
    """Decode persisted containers, dropping (with a warning) the invalid ones."""
    containers: dict[str, VirtualChunkContainer] = {}
    for key, raw in value.items():
        cont = VirtualChunkContainer.from_serde(raw)
        if cont is not None and "://" in cont.url_prefix and not cont.url_prefix.endswith("/"):
            # older writers allowed prefixes without the trailing "/" (spec-1 config.yaml,
            # FORMAT.md §4.5); they still match locations by prefix
            cont = VirtualChunkContainer(cont.url_prefix + "/", cont.store, cont.name)
        try:
            if cont is None:
                raise ValueError("unreadable container")
            cont.validate()
        except ValueError as err:
            _log.warning("ignoring invalid virtual chunk container %r: %s", key, err)
            continue
        if cont.name is not None:
            containers = {k: c for k, c in containers.items() if c.name != cont.name}
        containers[cont.url_prefix] = cont
    return containers or None


# ---- feature flags --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class FeatureFlag(_Config):
    """A repository feature flag and its state (read-only value)."""

    id: int
    name: str
    default_enabled: bool
    setting: bool | None

    @property
    def enabled(self) -> bool:
        return self.default_enabled if self.setting is None else self.setting


# ---- logging --------------------------------------------------------------------------------


def initialize_logs() -> None:
    """Configure the ``icechunk`` logger from ``ICECHUNK_LOG`` (e.g. ``debug``); stderr default."""
    set_logs_filter(None)


def set_logs_filter(log_filter_directive: str | None) -> None:
    """Set the log level: ``"debug"``, ``"icechunk=info"``...; None re-reads ``ICECHUNK_LOG``."""
    directive = os.environ.get("ICECHUNK_LOG") if log_filter_directive is None else log_filter_directive
    if not directive:
        return
    level_name = "WARNING"
    for part in directive.split(","):
        target, _, level = part.rpartition("=")
        if target in ("", "icechunk"):
            level_name = (level or target).upper()
    _log.setLevel(getattr(logging, level_name, logging.WARNING))
    if not _log.handlers:
        import sys

        stream = sys.stdout if os.environ.get("ICECHUNK_LOG_TO_STDOUT") else sys.stderr
        _log.addHandler(logging.StreamHandler(stream))


def shutdown_telemetry() -> None:
    """No-op: this implementation exports no telemetry."""
