"""Quickstart (grows with the project): the format layer round-trips a snapshot id."""

from icechunk.format.ids import INITIAL_SNAPSHOT_ID, SnapshotId

print("initial snapshot id:", INITIAL_SNAPSHOT_ID)
assert SnapshotId.parse(str(INITIAL_SNAPSHOT_ID)) == INITIAL_SNAPSHOT_ID
