"""Concrete configuration values the engine runs with (defaults applied once)."""

from __future__ import annotations

from dataclasses import dataclass

from icechunk.config import (
    ManifestSplittingConfig,
    RepositoryConfig,
    VirtualChunkContainer,
)
from icechunk.format.manifest import LocationCompression

__all__ = ["EffectiveConfig"]


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    """A :class:`RepositoryConfig` with every default filled in."""

    inline_chunk_threshold_bytes: int
    get_partial_values_concurrency: int
    compression_level: int
    max_concurrent_requests: int
    num_snapshot_nodes: int
    num_chunk_refs: int
    repo_update_max_tries: int
    repo_update_initial_backoff_ms: int
    repo_update_max_backoff_ms: int
    num_updates_per_repo_info_file: int
    location_compression: LocationCompression
    splitting: ManifestSplittingConfig | None
    max_concurrent_manifest_fetches: int
    containers: dict[str, VirtualChunkContainer]

    @staticmethod
    def of(config: RepositoryConfig) -> EffectiveConfig:
        compression = config.compression
        caching = config.caching
        retries = config.repo_update_retries.default if config.repo_update_retries else None
        manifest = config.manifest
        vloc = manifest.virtual_chunk_location_compression if manifest else None
        return EffectiveConfig(
            inline_chunk_threshold_bytes=_or(config.inline_chunk_threshold_bytes, 512),
            get_partial_values_concurrency=_or(config.get_partial_values_concurrency, 10),
            compression_level=_or(compression.level if compression else None, 3),
            max_concurrent_requests=_or(config.max_concurrent_requests, 256),
            num_snapshot_nodes=_or(caching.num_snapshot_nodes if caching else None, 500_000),
            num_chunk_refs=_or(caching.num_chunk_refs if caching else None, 15_000_000),
            repo_update_max_tries=_or(retries.max_tries if retries else None, 100),
            repo_update_initial_backoff_ms=_or(retries.initial_backoff_ms if retries else None, 50),
            repo_update_max_backoff_ms=_or(retries.max_backoff_ms if retries else None, 30_000),
            num_updates_per_repo_info_file=_or(config.num_updates_per_repo_info_file, 1000),
            location_compression=LocationCompression(
                min_num_chunks=_or(vloc.min_num_chunks if vloc else None, 1000),
                dictionary_max_training_samples=_or(
                    vloc.dictionary_max_training_samples if vloc else None, 100
                ),
                dictionary_max_size_bytes=_or(vloc.dictionary_max_size_bytes if vloc else None, 2048),
                compression_level=_or(vloc.compression_level if vloc else None, 3),
            ),
            splitting=manifest.splitting if manifest else None,
            max_concurrent_manifest_fetches=_or(
                manifest.max_concurrent_manifest_fetches_during_commit if manifest else None, 8
            ),
            containers=dict(config.virtual_chunk_containers or {}),
        )
