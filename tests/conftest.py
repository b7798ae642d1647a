from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("soak", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The reference-written repositories in ../shared/fixtures (skips when absent)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"fixture repositories not found at {FIXTURES} (../shared/fixtures is absent)")
    return FIXTURES


@pytest.fixture
def fixture_copy(fixtures_dir: Path, tmp_path: Path):
    """Return a function copying a fixture repository into a temporary directory."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(fixtures_dir / name, dest)
        return dest

    return copy
