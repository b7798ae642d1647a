"""Spec-1 config.yaml <-> serde-shaped repository config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from icechunk._errors import ErrorKind, FormatError
from icechunk.format.config_yaml import decode_config_yaml, encode_config_yaml
from icechunk.format.repo_config import decode_repo_config, encode_repo_config

V1_CONFIG = {
    "inline_chunk_threshold_bytes": 12,
    "get_partial_values_concurrency": None,
    "compression": None,
    "caching": None,
    "storage": None,
    "virtual_chunk_containers": {
        "tigris": {
            "name": "tigris",
            "url_prefix": "tigris",
            "store": {
                "tigris": {
                    "region": None,
                    "endpoint_url": "https://fly.storage.tigris.dev",
                    "anonymous": False,
                    "allow_http": False,
                }
            },
        },
        "az": {"name": "az", "url_prefix": "az", "store": {"azure": {}}},
        "file": {"name": "file", "url_prefix": "file", "store": {"local_file_system": ""}},
        "gcs": {"name": "gcs", "url_prefix": "gcs", "store": {"gcs": {}}},
        "s3": {
            "name": "s3",
            "url_prefix": "s3://testbucket",
            "store": {
                "s3_compatible": {
                    "region": "us-east-1",
                    "endpoint_url": "http://localhost:4200",
                    "anonymous": False,
                    "allow_http": True,
                    "force_path_style": True,
                }
            },
        },
    },
    "manifest": None,
}


def test_fixture_config_yaml(fixtures_dir: Path) -> None:
    raw = (fixtures_dir / "test-repo-v1/config.yaml").read_bytes()
    assert len(raw) == 757
    value = decode_config_yaml(raw)
    assert value == V1_CONFIG
    assert list(value["virtual_chunk_containers"]) == ["tigris", "az", "file", "gcs", "s3"]
    # our writer produces the same text as the reference writer did
    assert encode_config_yaml(value) == raw


def _s3(**extra: Any) -> dict[str, Any]:
    options = {
        "region": "eu-west-1",
        "endpoint_url": None,
        "anonymous": True,
        "allow_http": False,
        "force_path_style": False,
        "network_stream_timeout_seconds": 30,
        "requester_pays": False,
        "checksum_algorithm": None,
    }
    options.update(extra)
    return options


def _container(prefix: str, store: Any, name: str | None = None) -> dict[str, Any]:
    return {"name": name, "url_prefix": prefix, "store": store}


TYPICAL = {
    "inline_chunk_threshold_bytes": 0,
    "get_partial_values_concurrency": 10,
    "compression": {"algorithm": "zstd", "level": 5},
    "max_concurrent_requests": 256,
    "caching": {
        "num_snapshot_nodes": 500000,
        "num_chunk_refs": 15000000,
        "num_transaction_changes": 0,
        "num_bytes_attributes": 0,
        "num_bytes_chunks": 0,
    },
    "storage": {
        "concurrency": {
            "max_concurrent_requests_for_object": 5,
            "ideal_concurrent_request_size": 4096,
        },
        "retries": {"max_tries": 42, "initial_backoff_ms": 10, "max_backoff_ms": 1000},
        "timeouts": {
            "connect_timeout_ms": 1,
            "read_timeout_ms": 2,
            "operation_timeout_ms": None,
            "operation_attempt_timeout_ms": 4,
        },
        "unsafe_use_conditional_update": True,
        "unsafe_use_conditional_create": None,
        "unsafe_use_metadata": False,
        "storage_class": "STANDARD",
        "metadata_storage_class": None,
        "chunks_storage_class": "GLACIER",
        "minimum_size_for_multipart_upload": 104857600,
    },
    "virtual_chunk_containers": {
        "s3://bucket/": _container("s3://bucket/", {"s3": _s3()}),
        "http://host:9000/": _container(
            "http://host:9000/", {"s3_compatible": _s3(endpoint_url="http://host:9000")}, "minio"
        ),
        "tigris://b/": _container("tigris://b/", {"tigris": _s3(region=None)}),
        "gcs://g/": _container("gcs://g/", {"gcs": {"service_account": "x", "project": "123"}}),
        "az://c/": _container("az://c/", {"azure": {"account": "acct"}}),
        "https://example.com/": _container("https://example.com/", {"http": {}}),
        "file:///data/": _container("file:///data/", {"local_file_system": "/data"}),
        "memory://m/": _container("memory://m/", "in_memory"),
        "file:///0/": _container("file:///0/", {"local_file_system": "0"}),
        "file:///empty/": _container("file:///empty/", {"local_file_system": ""}),
    },
    "manifest": {
        "preload": {
            "max_total_refs": 10000,
            "preload_if": {
                "or": [
                    {"and": [{"name_matches": {"regex": "^time$"}}, "true"]},
                    {"num_refs": {"from": {"Included": 0}, "to": {"Excluded": 1000}}},
                    "false",
                ]
            },
            "max_arrays_to_scan": 50,
        },
        "splitting": {
            "split_sizes": [
                [
                    {"name_matches": {"regex": "split_*"}},
                    [
                        {"condition": {"Axis": 0}, "num_chunks": 1},
                        {"condition": {"DimensionName": "longitude"}, "num_chunks": 1},
                        {"condition": {"DimensionName": "yes"}, "num_chunks": 2},
                        {"condition": "Any", "num_chunks": 3},
                    ],
                ],
                [{"or": [{"path_matches": {"regex": "^/a/"}}, "any_array"]}, []],
            ]
        },
        "virtual_chunk_location_compression": {
            "min_num_chunks": 1000,
            "dictionary_max_training_samples": 100,
            "dictionary_max_size_bytes": 2048,
            "compression_level": 3,
        },
        "max_concurrent_manifest_fetches_during_commit": 4,
    },
    "previous_file": None,
    "repo_update_retries": {
        "default": {"max_tries": 100, "initial_backoff_ms": 50, "max_backoff_ms": 30000}
    },
    "num_updates_per_repo_info_file": 1000,
}


def test_typical_config_roundtrip_with_every_store_variant() -> None:
    text = encode_config_yaml(TYPICAL)
    for tag in (
        "!s3_compatible",
        "!local_file_system",
        "!gcs",
        "!azure",
        "!http",
        "!s3\n",
        "!tigris",
    ):
        assert tag.encode() in text
    assert b"store: in_memory" in text
    assert b"!Axis 0" in text
    assert b"!DimensionName longitude" in text
    assert b"!DimensionName 'yes'" in text  # would read back as a boolean unquoted
    assert b"!local_file_system '0'" in text
    assert b"!local_file_system ''" in text
    assert b"!name_matches" in text
    assert b"- any_array" in text
    decoded = decode_config_yaml(text)
    assert decoded == TYPICAL
    # the same value through the FlexBuffers form
    assert decode_repo_config(encode_repo_config(decoded)) == TYPICAL


def test_struct_fields_come_out_in_declaration_order() -> None:
    shuffled = dict(reversed(list(TYPICAL.items())))
    assert encode_config_yaml(shuffled) == encode_config_yaml(TYPICAL)
    assert list(decode_config_yaml(encode_config_yaml(shuffled))) == list(TYPICAL)


def test_a_container_keyed_like_a_variant_is_not_a_tag() -> None:
    value = {"virtual_chunk_containers": {"s3": _container("s3", {"s3": _s3()}, "s3")}}
    text = encode_config_yaml(value)
    assert b"  s3:\n" in text
    assert text.count(b"!s3") == 1
    assert decode_config_yaml(text) == value


def test_empty_and_invalid_files() -> None:
    assert decode_config_yaml(b"") == {}
    assert decode_config_yaml("inline_chunk_threshold_bytes: 3\n") == {
        "inline_chunk_threshold_bytes": 3
    }
    for bad in (b"- a\n- b\n", b"key: [unclosed", b"\xff\xfe", b"1: 2\n"):
        with pytest.raises(FormatError) as err:
            decode_config_yaml(bad, "some/config.yaml")
        assert err.value.kind == ErrorKind.CONFIG_DESERIALIZATION
        assert "some/config.yaml" in str(err.value)


def test_unencodable_value() -> None:
    with pytest.raises(FormatError) as err:
        encode_config_yaml({"inline_chunk_threshold_bytes": object()})
    assert err.value.kind == ErrorKind.SERIALIZATION


def test_unit_variants_written_as_tags_read_as_strings() -> None:
    text = b"""virtual_chunk_containers:
  memory://m/:
    name: null
    url_prefix: memory://m/
    store: !in_memory
manifest:
  splitting:
    split_sizes:
    - - !any_array
      - - condition: !Any
          num_chunks: 2
"""
    value = decode_config_yaml(text)
    assert value["virtual_chunk_containers"]["memory://m/"]["store"] == "in_memory"
    assert value["manifest"]["splitting"]["split_sizes"] == [
        ["any_array", [{"condition": "Any", "num_chunks": 2}]]
    ]
