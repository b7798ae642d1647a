"""Without the optional obstore dependency, object storage fails with a clear StorageError."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
sys.modules["obstore"] = None  # as if obstore were not installed
import icechunk as ic
try:
    ic.s3_storage(bucket="b", prefix="p", region="us-east-1", anonymous=True)
except ic.StorageError as err:
    print(type(err).__name__, err.kind, "obstore" in str(err))
"""


def test_s3_storage_without_obstore_names_the_dependency() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["StorageError", "storage-config", "True"]
