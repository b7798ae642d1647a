"""Virtual chunk containers in the repository config, object-store builders, authorization."""

from __future__ import annotations

from pathlib import Path

import pytest

import icechunk as ic
from icechunk import (
    Credentials,
    InvalidInputError,
    ObjectStoreConfig,
    RepositoryConfig,
    S3Options,
    StorageError,
    VirtualChunkContainer,
)
from icechunk.credentials import (
    HttpAccess,
    LocalFileSystemAccess,
    S3Credentials,
    gcs_anonymous_credentials,
    s3_anonymous_credentials,
    s3_static_credentials,
)
from icechunk.storage import azure_store, gcs_store, http_store, local_filesystem_store, s3_store


def _all_containers(data_dir: Path) -> list[VirtualChunkContainer]:
    return [
        VirtualChunkContainer(f"file://{data_dir}/", local_filesystem_store(str(data_dir))),
        VirtualChunkContainer(
            "s3://bucket-a/prefix/",
            s3_store(
                region="us-east-1", endpoint_url="http://127.0.0.1:9000", allow_http=True,
                anonymous=True, s3_compatible=True, force_path_style=True,
            ),
            name="minio",
        ),
        VirtualChunkContainer("s3://bucket-b/", s3_store(region="eu-west-1", requester_pays=True)),
        VirtualChunkContainer("gs://gbucket/", gcs_store({"service_account_path": "/x.json"})),
        VirtualChunkContainer("az://container/", azure_store(account="acct", config={"use_emulator": "true"})),
        VirtualChunkContainer("https://example.org/data/", http_store({"timeout": "30s"})),
    ]


def test_builders_return_the_documented_variants() -> None:
    assert local_filesystem_store("/data") == ObjectStoreConfig.LocalFileSystem("/data")
    s3 = s3_store(region="r", endpoint_url="http://e", allow_http=True, anonymous=True, force_path_style=True)
    assert isinstance(s3, ObjectStoreConfig.S3)
    assert s3.options == S3Options(
        region="r", endpoint_url="http://e", allow_http=True, anonymous=True, force_path_style=True,
        network_stream_timeout_seconds=60,
    )
    assert isinstance(s3_store(s3_compatible=True), ObjectStoreConfig.S3Compatible)
    assert gcs_store({"a": "b"}) == ObjectStoreConfig.Gcs({"a": "b"})
    assert azure_store(account="acct", config={"k": "v"}) == ObjectStoreConfig.Azure({"account": "acct", "k": "v"})
    assert http_store({"o": "1"}) == ObjectStoreConfig.Http({"o": "1"})


def test_containers_persist_through_create_open_and_save_config(tmp_path: Path) -> None:
    containers = _all_containers(tmp_path)
    config = RepositoryConfig.default()
    for c in containers:
        config.set_virtual_chunk_container(c)
    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    ic.Repository.create(storage, config)

    persisted = ic.Repository.fetch_config(storage)
    assert persisted is not None
    assert persisted.virtual_chunk_containers == {c.url_prefix: c for c in containers}
    reopened = ic.Repository.open(storage)
    assert reopened.config.virtual_chunk_containers == {c.url_prefix: c for c in containers}
    assert reopened.config.get_virtual_chunk_container("s3://bucket-a/prefix/").name == "minio"

    # change the containers and save: a fresh open sees the new set
    config = reopened.config
    config.clear_virtual_chunk_containers()
    config.set_virtual_chunk_container(containers[0])
    repo = reopened.reopen(config=RepositoryConfig())  # merge keeps the persisted ones
    assert len(repo.config.virtual_chunk_containers) == len(containers)
    repo = ic.Repository.open(storage, config=None)
    repo2 = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo2")), config)
    repo2.save_config()
    assert ic.Repository.open(repo2.storage).config.virtual_chunk_containers == {
        containers[0].url_prefix: containers[0]
    }
    assert repo.config.virtual_chunk_containers is not None


def test_container_validation() -> None:
    config = RepositoryConfig.default()
    with pytest.raises(ValueError, match="end with '/'"):
        config.set_virtual_chunk_container(VirtualChunkContainer("s3://bucket", s3_store()))
    with pytest.raises(ValueError, match="does not fit"):
        config.set_virtual_chunk_container(VirtualChunkContainer("gs://bucket/", s3_store()))
    with pytest.raises(ValueError, match="canonical"):
        config.set_virtual_chunk_container(
            VirtualChunkContainer("file:///data/../etc/", local_filesystem_store("/"))
        )
    with pytest.raises(ValueError, match="name"):
        config.set_virtual_chunk_container(VirtualChunkContainer("s3://b/", s3_store(), name="a/b"))
    # a named container replaces another one with the same name
    config.set_virtual_chunk_container(VirtualChunkContainer("s3://one/", s3_store(), name="n"))
    config.set_virtual_chunk_container(VirtualChunkContainer("s3://two/", s3_store(), name="n"))
    assert list(config.virtual_chunk_containers) == ["s3://two/"]


# ---- authorization --------------------------------------------------------------------------


def _repo_with(tmp_path: Path, *containers: VirtualChunkContainer) -> ic.Storage:
    config = RepositoryConfig.default()
    for c in containers:
        config.set_virtual_chunk_container(c)
    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    ic.Repository.create(storage, config)
    return storage


def test_authorized_prefixes_are_normalized_and_reported(tmp_path: Path) -> None:
    storage = _repo_with(tmp_path, VirtualChunkContainer("s3://bucket/", s3_store()))
    repo = ic.Repository.open(
        storage,
        authorize_virtual_chunk_access={
            "s3://bucket": Credentials.S3(s3_anonymous_credentials()),
            f"file://{tmp_path}": LocalFileSystemAccess,
        },
    )
    assert repo.authorized_virtual_container_prefixes == {"s3://bucket/", f"file://{tmp_path}/"}
    # reopen without the argument keeps them; with it, replaces them
    assert repo.reopen().authorized_virtual_container_prefixes == repo.authorized_virtual_container_prefixes
    replaced = repo.reopen(authorize_virtual_chunk_access={"s3://bucket/": Credentials.S3(S3Credentials.Anonymous())})
    assert replaced.authorized_virtual_container_prefixes == {"s3://bucket/"}
    # raw credentials are wrapped like containers_credentials does
    raw = ic.Repository.open(storage, authorize_virtual_chunk_access={"s3://bucket/": s3_anonymous_credentials()})
    assert raw.authorized_virtual_container_prefixes == {"s3://bucket/"}


@pytest.mark.parametrize(
    ("prefix", "replacement"),
    [
        ("s3://bucket/", "Credentials.S3(S3Credentials.FromEnv())"),
        ("gs://bucket/", "GcsCredentials.Anonymous()"),
        ("az://container/", "AzureCredentials.FromEnv()"),
        ("file:///data/", "LocalFileSystemAccess"),
        ("https://example.org/", "HttpAccess"),
    ],
)
def test_none_credential_is_deprecated_and_names_the_replacement(
    tmp_path: Path, prefix: str, replacement: str
) -> None:
    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    with pytest.warns(DeprecationWarning, match=replacement.replace("(", r"\(").replace(")", r"\)")):
        repo = ic.Repository.create(storage, authorize_virtual_chunk_access={prefix: None})
    assert repo.authorized_virtual_container_prefixes == {prefix}
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        ic.Repository.open(storage, authorize_virtual_chunk_access={prefix: None})
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        ic.Repository.open_or_create(storage, authorize_virtual_chunk_access={prefix: None})
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        repo.reopen(authorize_virtual_chunk_access={prefix: None})


@pytest.mark.parametrize(
    ("container", "credential"),
    [
        (VirtualChunkContainer("s3://bucket/", s3_store()), HttpAccess),
        (VirtualChunkContainer("s3://bucket/", s3_store()), Credentials.Gcs(gcs_anonymous_credentials())),
        (VirtualChunkContainer("gs://bucket/", gcs_store()), Credentials.S3(s3_anonymous_credentials())),
        (VirtualChunkContainer("file:///data/", local_filesystem_store("/data")), HttpAccess),
        (VirtualChunkContainer("https://host.example/", http_store()), LocalFileSystemAccess),
    ],
)
def test_credential_that_does_not_fit_the_store_fails_at_open(
    tmp_path: Path, container: VirtualChunkContainer, credential: object
) -> None:
    storage = _repo_with(tmp_path, container)
    auth = {container.url_prefix: credential}
    with pytest.raises(StorageError, match="does not fit"):
        ic.Repository.open(storage, authorize_virtual_chunk_access=auth)
    repo = ic.Repository.open(storage)
    with pytest.raises(StorageError, match="does not fit"):
        repo.reopen(authorize_virtual_chunk_access=auth)
    config = RepositoryConfig.default()
    config.set_virtual_chunk_container(container)
    fresh = ic.local_filesystem_storage(str(tmp_path / "fresh"))
    with pytest.raises(StorageError, match="does not fit"):
        ic.Repository.create(fresh, config, authorize_virtual_chunk_access=auth)
    assert not ic.Repository.exists(fresh)  # nothing was written


def test_fitting_credentials_open(tmp_path: Path) -> None:
    storage = _repo_with(
        tmp_path,
        VirtualChunkContainer("s3://bucket/", s3_store()),
        VirtualChunkContainer("file:///data/", local_filesystem_store("/data")),
        VirtualChunkContainer("https://host.example/", http_store()),
    )
    repo = ic.Repository.open(
        storage,
        authorize_virtual_chunk_access=ic.containers_credentials(
            {
                "s3://bucket/": s3_static_credentials(access_key_id="a", secret_access_key="b"),
                "file:///data/": LocalFileSystemAccess,
                "https://host.example/": HttpAccess,
            }
        ),
    )
    assert len(repo.authorized_virtual_container_prefixes) == 3


def test_non_credential_values_are_rejected(tmp_path: Path) -> None:
    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    with pytest.raises(InvalidInputError, match="must be a credential"):
        ic.Repository.create(storage, authorize_virtual_chunk_access={"s3://b/": "secret"})
