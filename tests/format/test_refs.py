"""Spec-1 refs: keys, ref.json codec, listing, name validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from icechunk._errors import ErrorKind, FormatError, InvalidInputError
from icechunk.format.ids import SnapshotId
from icechunk.format.refs import (
    TAG_TOMBSTONE,
    RefListing,
    branch_key,
    decode_ref,
    encode_ref,
    parse_ref_listing,
    tag_key,
    tag_tombstone_key,
    validate_ref_name,
)

V1_REFS = {
    "refs/branch.main/ref.json": "NXH3M0HJ7EEJ0699DPP0",
    "refs/branch.my-branch/ref.json": "XDZ162T1TYBEJMK99NPG",
    "refs/tag.it works!/ref.json": "4QF8JA0YPDN51MHSSYVG",
    "refs/tag.it also works!/ref.json": "XDZ162T1TYBEJMK99NPG",
    "refs/tag.deleted/ref.json": "4QF8JA0YPDN51MHSSYVG",
}


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "refs").rglob("*") if p.is_file())


def test_fixture_refs_decode_and_reencode(fixtures_dir: Path) -> None:
    root = fixtures_dir / "test-repo-v1"
    for key, expected in V1_REFS.items():
        raw = (root / key).read_bytes()
        assert len(raw) == 35
        sid = decode_ref(raw, key)
        assert sid == SnapshotId.parse(expected)
        assert encode_ref(sid) == raw
    assert (root / "refs/tag.deleted/ref.json.deleted").read_bytes() == TAG_TOMBSTONE


def test_fixture_listing(fixtures_dir: Path) -> None:
    root = fixtures_dir / "test-repo-v1"
    keys = _listing(root)
    assert len(keys) == 6
    expected = RefListing(
        branches=frozenset({"main", "my-branch"}),
        tags=frozenset({"it works!", "it also works!"}),
        deleted_tags=frozenset({"deleted"}),
    )
    assert parse_ref_listing(keys) == expected
    # the same keys relative to refs/
    assert parse_ref_listing(k.removeprefix("refs/") for k in keys) == expected


def test_keys() -> None:
    assert branch_key("main") == "refs/branch.main/ref.json"
    assert tag_key("it works!") == "refs/tag.it works!/ref.json"
    assert tag_tombstone_key("deleted") == "refs/tag.deleted/ref.json.deleted"
    assert branch_key("a.b") == "refs/branch.a.b/ref.json"
    with pytest.raises(InvalidInputError):
        branch_key("a/b")


def test_listing_edge_cases() -> None:
    keys = [
        "refs/branch.x.y/ref.json",  # dots in names are kept
        "refs/branch.z/other.json",  # not a ref object
        "refs/tag.gone/ref.json.deleted",  # tombstone without ref.json still counts as deleted
        "refs/tag./ref.json",  # empty name
        "refs/garbage/ref.json",
        "refs/tag.t/nested/ref.json",
        "refs/tag.naïve ✓/ref.json",
    ]
    listing = parse_ref_listing(keys)
    assert listing.branches == {"x.y"}
    assert listing.tags == {"naïve ✓"}
    assert listing.deleted_tags == {"gone"}


def test_validate_ref_name() -> None:
    assert validate_ref_name("it works!") == "it works!"
    for bad in ("", "a/b", "/", 3):
        with pytest.raises(InvalidInputError) as err:
            validate_ref_name(bad)  # type: ignore[arg-type]
        assert err.value.kind == ErrorKind.INVALID_REF_NAME


def test_decode_ref_is_lenient_about_formatting_but_strict_about_content() -> None:
    sid = SnapshotId.parse("NXH3M0HJ7EEJ0699DPP0")
    assert decode_ref(b'{ "snapshot" : "NXH3M0HJ7EEJ0699DPP0" }\n') == sid
    for bad in (
        b"",
        b"not json",
        b"[]",
        b'{"snap": "x"}',
        b'{"snapshot": "TOO-SHORT"}',
        b"\xff\xfe",
    ):
        with pytest.raises(FormatError) as err:
            decode_ref(bad, "refs/branch.x/ref.json")
        assert "refs/branch.x/ref.json" in str(err.value)
        assert err.value.kind == ErrorKind.DESERIALIZATION
