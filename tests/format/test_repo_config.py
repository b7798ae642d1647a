"""The persisted repository config (FlexBuffers, serde-shaped value)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icechunk._errors import ErrorKind, FormatError
from icechunk.format.repo_config import (
    REPO_CONFIG_FIELDS,
    decode_repo_config,
    encode_repo_config,
    normalize_repo_config,
)
from icechunk.format.repo_info import decode_repo_info
from icechunk.format.values import flex_dumps, flex_loads
from tests.format.strategies import json_values, map_keys

LOCAL_STORAGE = {
    "concurrency": {"max_concurrent_requests_for_object": 5, "ideal_concurrent_request_size": 4096},
    "retries": {"max_tries": 1, "initial_backoff_ms": 0, "max_backoff_ms": 0},
    "timeouts": None,
    "unsafe_use_conditional_update": False,
    "unsafe_use_conditional_create": None,
    "unsafe_use_metadata": False,
    "storage_class": None,
    "metadata_storage_class": None,
    "chunks_storage_class": None,
    "minimum_size_for_multipart_upload": None,
}


def _top(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = dict.fromkeys(REPO_CONFIG_FIELDS)
    value.update(overrides)
    return value


V2_CONFIG = _top(
    inline_chunk_threshold_bytes=12,
    storage=LOCAL_STORAGE,
    virtual_chunk_containers={
        "s3://testbucket/": {
            "name": None,
            "url_prefix": "s3://testbucket/",
            "store": {
                "s3_compatible": {
                    "region": "us-east-1",
                    "endpoint_url": "http://localhost:4200",
                    "anonymous": False,
                    "allow_http": True,
                    "force_path_style": True,
                    "network_stream_timeout_seconds": 60,
                    "requester_pays": False,
                }
            },
        }
    },
)


def _s3(region: str | None, endpoint: str, allow_http: bool, path_style: bool) -> dict[str, Any]:
    return {
        "region": region,
        "endpoint_url": endpoint,
        "anonymous": False,
        "allow_http": allow_http,
        "force_path_style": path_style,
        "network_stream_timeout_seconds": None,
        "requester_pays": False,
    }


MIGRATED_CONTAINERS = {  # in the order the writer inserted them (a Rust HashMap)
    "s3": {
        "name": "s3",
        "url_prefix": "s3://testbucket",
        "store": {"s3_compatible": _s3("us-east-1", "http://localhost:4200", True, True)},
    },
    "az": {"name": "az", "url_prefix": "az", "store": {"azure": {}}},
    "file": {"name": "file", "url_prefix": "file", "store": {"local_file_system": ""}},
    "gcs": {"name": "gcs", "url_prefix": "gcs", "store": {"gcs": {}}},
    "tigris": {
        "name": "tigris",
        "url_prefix": "tigris",
        "store": {"tigris": _s3(None, "https://fly.storage.tigris.dev", False, False)},
    },
}


def _config_bytes(fixtures_dir: Path, rel: str) -> bytes:
    config = decode_repo_info((fixtures_dir / rel).read_bytes()).config
    assert config is not None
    return config


def _assert_same_order(a: Any, b: Any) -> None:
    """Equal values with dict keys in the same order, recursively."""
    assert a == b
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same_order(a[k], b[k])
    elif isinstance(a, list):
        for x, y in zip(a, b, strict=True):
            _assert_same_order(x, y)


def test_test_repo_v2_config(fixtures_dir: Path) -> None:
    raw = _config_bytes(fixtures_dir, "test-repo-v2/repo")
    assert len(raw) == 934
    value = decode_repo_config(raw)
    _assert_same_order(value, V2_CONFIG)
    assert encode_repo_config(value) == raw


def test_migrated_config(fixtures_dir: Path) -> None:
    raw = _config_bytes(fixtures_dir, "test-repo-v2-migrated/repo")
    value = decode_repo_config(raw)
    expected = _top(
        inline_chunk_threshold_bytes=12,
        storage=LOCAL_STORAGE,
        virtual_chunk_containers=MIGRATED_CONTAINERS,
    )
    _assert_same_order(value, expected)
    assert encode_repo_config(value) == raw


def test_struct_fields_are_written_in_declaration_order() -> None:
    shuffled = dict(reversed(list(V2_CONFIG.items())))
    shuffled["storage"] = dict(reversed(list(LOCAL_STORAGE.items())))
    assert encode_repo_config(shuffled) == encode_repo_config(V2_CONFIG)
    _assert_same_order(normalize_repo_config(shuffled), V2_CONFIG)


def test_missing_and_unknown_keys_are_kept_as_is() -> None:
    value = {"zzz_future": [1, 2], "inline_chunk_threshold_bytes": 7}
    normalized = normalize_repo_config(value)
    assert list(normalized) == ["inline_chunk_threshold_bytes", "zzz_future"]
    decoded = decode_repo_config(encode_repo_config(value))
    _assert_same_order(decoded, normalized)


def test_map_entries_keep_their_order() -> None:
    containers = dict(reversed(list(MIGRATED_CONTAINERS.items())))
    value = _top(virtual_chunk_containers=containers)
    decoded = decode_repo_config(encode_repo_config(value))
    assert list(decoded["virtual_chunk_containers"]) == list(containers)


def test_split_repo_v2_splitting_layout_roundtrip() -> None:
    splitting = {
        "split_sizes": [
            [
                {"name_matches": {"regex": "split_*"}},
                [
                    {"condition": {"Axis": 0}, "num_chunks": 1},
                    {"condition": {"DimensionName": "longitude"}, "num_chunks": 1},
                    {"condition": "Any", "num_chunks": 3},
                ],
            ],
            [
                {"or": [{"path_matches": {"regex": "^/a"}}, "any_array"]},
                [{"num_chunks": 2, "condition": "Any"}],  # key order fixed on encode
            ],
        ]
    }
    manifest = {
        "preload": {
            "max_total_refs": 100,
            "preload_if": {
                "and": [
                    {"name_matches": {"regex": "time"}},
                    {"num_refs": {"from": "Unbounded", "to": {"Excluded": 1000}}},
                ]
            },
            "max_arrays_to_scan": None,
        },
        "splitting": splitting,
        "virtual_chunk_location_compression": {
            "min_num_chunks": 1000,
            "dictionary_max_training_samples": 100,
            "dictionary_max_size_bytes": 2048,
            "compression_level": 3,
        },
        "max_concurrent_manifest_fetches_during_commit": None,
    }
    value = _top(manifest=manifest, num_updates_per_repo_info_file=1000)
    raw = encode_repo_config(value)
    decoded = decode_repo_config(raw)
    assert decoded == value
    last_dim = decoded["manifest"]["splitting"]["split_sizes"][1][1][0]
    assert list(last_dim) == ["condition", "num_chunks"]
    assert encode_repo_config(decoded) == raw
    # the generic FlexBuffers reader agrees
    assert flex_loads(raw) == value


def test_repeated_keys_are_written_once() -> None:
    raw = encode_repo_config(_top(virtual_chunk_containers=MIGRATED_CONTAINERS))
    assert raw.count(b"url_prefix\x00") == 1
    assert raw.count(b"endpoint_url\x00") == 1


_keys = map_keys(8)
_json = json_values(key_size=8, dict_size=5, max_leaves=20)


def _map_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return list(value) + [k for v in value.values() for k in _map_keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _map_keys(v)]
    return []


@given(st.dictionaries(_keys, _json, max_size=6))
def test_reader_matches_flexbuffers_and_keeps_insertion_order(value: dict[str, Any]) -> None:
    value = normalize_repo_config(value)  # random keys may hit known struct fields
    raw = flex_dumps(value, sort_keys=False)
    decoded = decode_repo_config(raw)
    assert decoded == value == flex_loads(raw)
    assert encode_repo_config(value) == raw
    keys = _map_keys(value)
    if len(keys) == len(set(keys)):  # no shared keys: the insertion order is fully recoverable
        _assert_same_order(decoded, value)
        assert encode_repo_config(decoded) == raw


def test_garbage_raises_format_error() -> None:
    for bad in (b"", b"\x00", b"\x01\x02\x03\x04", b"\xff" * 40, flex_dumps([1, 2, 3])):
        with pytest.raises(FormatError) as err:
            decode_repo_config(bad, "cfgfile")
        assert err.value.kind == ErrorKind.CONFIG_DESERIALIZATION
        assert "cfgfile" in str(err.value)


def test_fuzzed_config_only_raises_format_error(fixtures_dir: Path) -> None:
    raw = _config_bytes(fixtures_dir, "test-repo-v2-migrated/repo")
    rng = random.Random(99)
    errors = 0
    for _ in range(300):
        buf = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        try:
            decode_repo_config(bytes(buf))
        except FormatError:
            errors += 1
    assert errors > 0


def test_encode_rejects_non_json_values() -> None:
    with pytest.raises(FormatError) as err:
        encode_repo_config({"inline_chunk_threshold_bytes": object()})
    assert err.value.kind == ErrorKind.SERIALIZATION
    with pytest.raises(FormatError):
        encode_repo_config([1, 2])  # type: ignore[arg-type]
