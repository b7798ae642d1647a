"""Test helpers (API.md §16).

Public: :class:`LatencyStorage`.  Also here, not part of the public contract:
:mod:`icechunk.testing.storage` (the ``StorageTests`` suite every backend passes; needs
pytest), :mod:`icechunk.testing.moto` (an S3 server on 127.0.0.1; needs ``moto[server]``),
and :class:`icechunk.testing._wrappers.FlakyStorage` (injected transient failures).
"""

from icechunk.testing._wrappers import LatencyStorage

__all__ = ["LatencyStorage"]
