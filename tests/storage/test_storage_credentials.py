"""icechunk.credentials: classes, factories with the reference dispatch orders, pickling, reprs."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

import icechunk.credentials as c
from icechunk._errors import ErrorKind, InvalidInputError
from icechunk.storage._obstore import _AzureProvider, _GcsProvider, _S3Provider

CALLS: list[str] = []


def fresh_s3() -> c.S3StaticCredentials:
    CALLS.append("s3")
    return c.S3StaticCredentials("KEYID", "SECRET", "TOKEN", datetime.now(UTC) + timedelta(hours=1))


def fresh_gcs() -> c.GcsBearerCredential:
    CALLS.append("gcs")
    return c.GcsBearerCredential("BEARER", expires_after=datetime.now(UTC) + timedelta(hours=1))


def fresh_azure() -> c.AzureRefreshableCredential.SasToken:
    CALLS.append("azure")
    return c.AzureRefreshableCredential.SasToken("SAS", expires_after=None)


# ---- S3 dispatch ----------------------------------------------------------------------------


def test_s3_credentials_dispatch_order() -> None:
    assert isinstance(c.s3_credentials(), c.S3Credentials.FromEnv)
    assert isinstance(c.s3_credentials(from_env=True), c.S3Credentials.FromEnv)
    assert isinstance(c.s3_credentials(anonymous=True), c.S3Credentials.Anonymous)
    assert isinstance(c.s3_credentials(get_credentials=fresh_s3), c.S3Credentials.Refreshable)
    static = c.s3_credentials(access_key_id="a", secret_access_key="b", session_token="t")
    assert static == c.S3Credentials.Static(c.S3StaticCredentials("a", "b", "t"))
    # from_env=False and anonymous=False with nothing else: no usable combination
    for kwargs in [
        {"from_env": False},
        {"anonymous": True, "access_key_id": "a", "secret_access_key": "b"},
        {"from_env": True, "access_key_id": "a", "secret_access_key": "b"},
        {"get_credentials": fresh_s3, "anonymous": True},
        {"access_key_id": "a"},
    ]:
        with pytest.raises(ValueError, match="Conflicting arguments") as error:
            c.s3_credentials(**kwargs)  # type: ignore[arg-type]
        assert isinstance(error.value, InvalidInputError)
        assert error.value.kind == ErrorKind.INVALID_CREDENTIALS


def test_s3_refreshable_scatter_calls_once_and_travels_in_pickles() -> None:
    CALLS.clear()
    lazy = c.s3_refreshable_credentials(fresh_s3)
    assert CALLS == [] and lazy.current is None
    eager = c.s3_refreshable_credentials(fresh_s3, scatter_initial_credentials=True)
    assert CALLS == ["s3"]
    clone = pickle.loads(pickle.dumps(eager))
    assert clone == eager
    assert clone.current is not None and clone.current.access_key_id == "KEYID"


def test_refreshable_function_must_be_picklable() -> None:
    with pytest.raises(InvalidInputError, match="picklable"):
        c.s3_refreshable_credentials(lambda: fresh_s3())
    with pytest.raises(InvalidInputError, match="callable"):
        c.gcs_refreshable_credentials("not callable")  # type: ignore[arg-type]


# ---- GCS and Azure dispatch ----------------------------------------------------------------


def test_gcs_credentials_dispatch_order() -> None:
    assert isinstance(c.gcs_credentials(), c.GcsCredentials.FromEnv)
    assert isinstance(c.gcs_credentials(anonymous=True, bearer_token="x"), c.GcsCredentials.Anonymous)
    # as in the reference: get_credentials alone hits the FromEnv branch first
    assert isinstance(c.gcs_credentials(get_credentials=fresh_gcs), c.GcsCredentials.FromEnv)
    assert isinstance(c.gcs_credentials(get_credentials=fresh_gcs, from_env=False), c.GcsCredentials.Refreshable)
    assert c.gcs_credentials(bearer_token="tok") == c.GcsCredentials.Static(c.GcsStaticCredentials.BearerToken("tok"))
    assert c.gcs_static_credentials(service_account_file="f", bearer_token="t") == c.GcsStaticCredentials.ServiceAccount("f")
    assert c.gcs_static_credentials(service_account_key="k") == c.GcsStaticCredentials.ServiceAccountKey("k")
    assert c.gcs_static_credentials(application_credentials="p") == c.GcsStaticCredentials.ApplicationCredentials("p")
    with pytest.raises(ValueError):
        c.gcs_static_credentials()
    with pytest.raises(ValueError, match="Conflicting"):
        c.gcs_credentials(from_env=False)
    with pytest.raises(ValueError, match="Conflicting"):
        c.gcs_credentials(bearer_token="t", from_env=True)
    assert isinstance(c.gcs_anonymous_credentials(), c.GcsCredentials.Anonymous)


def test_azure_credentials_dispatch_order() -> None:
    assert isinstance(c.azure_credentials(), c.AzureCredentials.FromEnv)
    assert isinstance(c.azure_credentials(anonymous=True, access_key="k"), c.AzureCredentials.Anonymous)
    assert isinstance(c.azure_credentials(get_credentials=fresh_azure, access_key="k"), c.AzureCredentials.Refreshable)
    assert c.azure_credentials(sas_token="s") == c.AzureCredentials.Static(c.AzureStaticCredentials.SasToken("s"))
    assert c.azure_static_credentials(bearer_token="b") == c.AzureStaticCredentials.BearerToken("b")
    with pytest.raises(ValueError):
        c.azure_static_credentials(access_key="a", sas_token="s")
    with pytest.raises(ValueError):
        c.azure_static_credentials()
    with pytest.raises(ValueError, match="Conflicting"):
        c.azure_credentials(access_key="k", from_env=True)
    with pytest.raises(ValueError, match="Conflicting"):
        c.azure_credentials(from_env=False)


# ---- containers -----------------------------------------------------------------------------


def test_containers_credentials_wraps_by_type() -> None:
    s3 = c.s3_anonymous_credentials()
    gcs = c.gcs_from_env_credentials()
    az = c.azure_from_env_credentials()
    wrapped = c.containers_credentials(
        {
            "s3://b/": s3,
            "gs://g/": gcs,
            "az://a/": az,
            "file:///d/": c.LocalFileSystemAccess,
            "https://h/": c.HttpAccess,
            "s3://none/": None,
            "s3://already/": c.Credentials.S3(s3),
        }
    )
    assert wrapped["s3://b/"] == c.Credentials.S3(s3)
    assert wrapped["gs://g/"] == c.Credentials.Gcs(gcs)
    assert wrapped["az://a/"] == c.Credentials.Azure(az)
    assert wrapped["file:///d/"] is c.LocalFileSystemAccess
    assert wrapped["https://h/"] == c.Credentials.HttpAccess()
    assert wrapped["s3://none/"] is None
    assert wrapped["s3://already/"] == c.Credentials.S3(s3)
    with pytest.raises(ValueError, match="s3://bad/"):
        c.containers_credentials({"s3://bad/": "a string"})  # type: ignore[dict-item]


# ---- pickling and reprs ---------------------------------------------------------------------

ALL_VALUES = [
    c.s3_static_credentials(access_key_id="KEYID", secret_access_key="SECRET", session_token="TOKEN"),
    c.s3_refreshable_credentials(fresh_s3, scatter_initial_credentials=True),
    c.gcs_credentials(service_account_key="SECRET"),
    c.gcs_credentials(bearer_token="BEARER"),
    c.gcs_refreshable_credentials(fresh_gcs, scatter_initial_credentials=True),
    c.azure_credentials(access_key="SECRET"),
    c.azure_credentials(sas_token="SAS"),
    c.azure_credentials(bearer_token="BEARER"),
    c.azure_refreshable_credentials(fresh_azure, scatter_initial_credentials=True),
    c.Credentials.S3(c.s3_static_credentials(access_key_id="KEYID", secret_access_key="SECRET")),
    c.AzureRefreshableCredential.AccessKey("SECRET", expires_after=None),
    c.AzureRefreshableCredential.BearerToken("BEARER"),
    c.GcsBearerCredential("BEARER"),
]


@pytest.mark.parametrize("value", ALL_VALUES, ids=lambda v: type(v).__qualname__)
def test_credentials_pickle_and_repr_hides_secrets(value: object) -> None:
    assert pickle.loads(pickle.dumps(value)) == value
    text = repr(value)
    assert text.startswith("icechunk.credentials.")
    for secret in ("KEYID", "SECRET", "TOKEN", "BEARER", "SAS"):
        assert secret not in text
    assert str(value) == text


def test_module_level_sentinels() -> None:
    assert c.LocalFileSystemAccess == c.Credentials.LocalFileSystemAccess()
    assert c.HttpAccess == c.Credentials.HttpAccess()
    assert repr(c.HttpAccess) == "icechunk.credentials.Credentials.HttpAccess()"


# ---- refreshing providers (what obstore calls) ----------------------------------------------


def test_s3_provider_uses_current_until_it_expires() -> None:
    CALLS.clear()
    valid = c.S3StaticCredentials("CUR", "S", expires_after=datetime.now(UTC) + timedelta(hours=1))
    provider = _S3Provider(pickle.dumps(fresh_s3), valid)
    first = provider()
    assert first["access_key_id"] == "CUR" and CALLS == []
    expired = c.S3StaticCredentials("OLD", "S", expires_after=datetime(2000, 1, 1))  # naive = UTC
    provider = _S3Provider(pickle.dumps(fresh_s3), expired)
    got = provider()
    assert CALLS == ["s3"]
    assert got["access_key_id"] == "KEYID" and got["token"] == "TOKEN"
    assert got["expires_at"].tzinfo is not None
    provider()  # cached until expiry
    assert CALLS == ["s3"]


def test_gcs_and_azure_providers() -> None:
    CALLS.clear()
    assert _GcsProvider(pickle.dumps(fresh_gcs), None)()["token"] == "BEARER"
    assert _AzureProvider(pickle.dumps(fresh_azure), None)() == {"sas_token": "SAS", "expires_at": None}
    assert CALLS == ["gcs", "azure"]
