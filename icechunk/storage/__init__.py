"""Async byte storage with conditional writes: in-memory, local disk, and object stores.

The public names (``__all__``) are those of API.md §7.  The vocabulary the engine uses
(:class:`RangeRequest`, :class:`VersionToken`, :class:`PutResult`, ...) is importable from
here too.
"""

from icechunk._types import ChunkType
from icechunk.config import (
    AnyObjectStoreConfig,
    ChecksumAlgorithm,
    ObjectStoreConfig,
    S3Options,
    StorageConcurrencySettings,
    StorageRetriesSettings,
    StorageSettings,
    StorageTimeoutSettings,
)
from icechunk.storage._abc import ByteRange as ByteRange
from icechunk.storage._abc import ObjectInfo as ObjectInfo
from icechunk.storage._abc import OffsetRange as OffsetRange
from icechunk.storage._abc import PutMode as PutMode
from icechunk.storage._abc import PutResult as PutResult
from icechunk.storage._abc import RangeRequest as RangeRequest
from icechunk.storage._abc import Storage
from icechunk.storage._abc import StorageObjectInfo as StorageObjectInfo
from icechunk.storage._abc import SuffixRange as SuffixRange
from icechunk.storage._abc import VersionToken as VersionToken
from icechunk.storage._factories import (
    azure_storage,
    azure_store,
    gcs_storage,
    gcs_store,
    http_storage,
    http_store,
    in_memory_storage,
    local_filesystem_storage,
    local_filesystem_store,
    r2_storage,
    redirect_storage,
    s3_object_store_storage,
    s3_storage,
    s3_store,
    tigris_storage,
)
from icechunk.storage._retry import TransientStorageError as TransientStorageError

__all__ = [
    "AnyObjectStoreConfig",
    "ChecksumAlgorithm",
    "ChunkType",
    "ObjectStoreConfig",
    "S3Options",
    "Storage",
    "StorageConcurrencySettings",
    "StorageRetriesSettings",
    "StorageSettings",
    "StorageTimeoutSettings",
    "azure_storage",
    "azure_store",
    "gcs_storage",
    "gcs_store",
    "http_storage",
    "http_store",
    "in_memory_storage",
    "local_filesystem_storage",
    "local_filesystem_store",
    "r2_storage",
    "redirect_storage",
    "s3_object_store_storage",
    "s3_storage",
    "s3_store",
    "tigris_storage",
]
