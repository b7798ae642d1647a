"""Credentials for object storage (a leaf module: stdlib only).

Credential values are small tagged classes (``S3Credentials.Static``, ``GcsCredentials.FromEnv``,
...) built by the factory functions below.  They pickle (refreshable credentials carry the
*pickled* user function, so it must be importable where it is unpickled) and their ``repr``
never shows a secret: keys, secrets, tokens and bearer strings print as ``'<redacted>'``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeAlias

from icechunk._errors import ErrorKind, InvalidInputError

__all__ = [
    "AnyAzureCredential",
    "AnyAzureStaticCredential",
    "AnyCredential",
    "AnyGcsCredential",
    "AnyGcsStaticCredential",
    "AnyS3Credential",
    "AzureCredentials",
    "AzureRefreshableCredential",
    "AzureStaticCredentials",
    "Credentials",
    "GcsBearerCredential",
    "GcsCredentials",
    "GcsStaticCredentials",
    "HttpAccess",
    "LocalFileSystemAccess",
    "S3Credentials",
    "S3StaticCredentials",
    "azure_anonymous_credentials",
    "azure_credentials",
    "azure_from_env_credentials",
    "azure_refreshable_credentials",
    "azure_static_credentials",
    "containers_credentials",
    "gcs_anonymous_credentials",
    "gcs_credentials",
    "gcs_from_env_credentials",
    "gcs_refreshable_credentials",
    "gcs_static_credentials",
    "s3_anonymous_credentials",
    "s3_credentials",
    "s3_from_env_credentials",
    "s3_refreshable_credentials",
    "s3_static_credentials",
]

_REDACTED = "'<redacted>'"


class _Credential:
    """Shared repr: fully qualified name, secret fields redacted, ``pickled_function`` sized."""

    _SECRET_FIELDS: tuple[str, ...] = ()

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None and f.name in self._SECRET_FIELDS:
                shown = _REDACTED
            elif f.name == "pickled_function":
                shown = f"<pickled function, {len(value)} bytes>"
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"icechunk.credentials.{type(self).__qualname__}({', '.join(parts)})"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(repr(self))}</pre>"


# ---- S3 -------------------------------------------------------------------------------------


@dataclass(eq=True, repr=False)
class S3StaticCredentials(_Credential):
    """An S3 access key pair, optionally with a session token and an expiry time.

    Parameters
    ----------
    access_key_id, secret_access_key
        The key pair.
    session_token
        Temporary session token (STS), if any.
    expires_after
        When these credentials stop being valid (None: never).  Refreshable credentials call
        their function again once this time has passed.
    """

    _SECRET_FIELDS = ("access_key_id", "secret_access_key", "session_token")

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expires_after: datetime | None = None


class S3Credentials:
    """How to authenticate to S3: one of the nested variants."""

    @dataclass(frozen=True, repr=False)
    class FromEnv(_Credential):
        """Credentials from the environment (``AWS_*`` variables, profile, instance role)."""

    @dataclass(frozen=True, repr=False)
    class Anonymous(_Credential):
        """Unsigned requests (public buckets)."""

    @dataclass(frozen=True, repr=False)
    class Static(_Credential):
        """A fixed key pair."""

        credentials: S3StaticCredentials

    @dataclass(frozen=True, repr=False)
    class Refreshable(_Credential):
        """A pickled function returning :class:`S3StaticCredentials`, called when needed.

        ``current`` holds the last result (set by ``scatter_initial_credentials``) so that
        pickled copies need not call the function again before it expires.
        """

        pickled_function: bytes
        current: S3StaticCredentials | None = None


# ---- GCS ------------------------------------------------------------------------------------


@dataclass(eq=True, repr=False, init=False)
class GcsBearerCredential(_Credential):
    """A GCS bearer token with an optional expiry time."""

    _SECRET_FIELDS = ("bearer",)

    bearer: str
    expires_after: datetime | None

    def __init__(self, bearer: str, *, expires_after: datetime | None = None) -> None:
        self.bearer = bearer
        self.expires_after = expires_after


class GcsStaticCredentials:
    """Fixed GCS credentials: one of the nested variants."""

    @dataclass(frozen=True, repr=False)
    class ServiceAccount(_Credential):
        """Path to a service-account JSON file."""

        path: str

    @dataclass(frozen=True, repr=False)
    class ServiceAccountKey(_Credential):
        """The service-account JSON itself."""

        _SECRET_FIELDS = ("key",)

        key: str

    @dataclass(frozen=True, repr=False)
    class ApplicationCredentials(_Credential):
        """Path to an application-default-credentials JSON file."""

        path: str

    @dataclass(frozen=True, repr=False)
    class BearerToken(_Credential):
        """A bearer token."""

        _SECRET_FIELDS = ("token",)

        token: str


class GcsCredentials:
    """How to authenticate to Google Cloud Storage: one of the nested variants."""

    @dataclass(frozen=True, repr=False)
    class Anonymous(_Credential):
        """Unsigned requests (public buckets)."""

    @dataclass(frozen=True, repr=False)
    class FromEnv(_Credential):
        """Application default credentials from the environment."""

    @dataclass(frozen=True, repr=False)
    class Static(_Credential):
        """Fixed credentials (a ``GcsStaticCredentials`` variant)."""

        credentials: AnyGcsStaticCredential

    @dataclass(frozen=True, repr=False)
    class Refreshable(_Credential):
        """A pickled function returning :class:`GcsBearerCredential`, called when needed."""

        pickled_function: bytes
        current: GcsBearerCredential | None = None


# ---- Azure ----------------------------------------------------------------------------------


class AzureStaticCredentials:
    """Fixed Azure credentials: one of the nested variants."""

    @dataclass(frozen=True, repr=False)
    class AccessKey(_Credential):
        """A storage-account access key."""

        _SECRET_FIELDS = ("key",)

        key: str

    @dataclass(frozen=True, repr=False)
    class SasToken(_Credential):
        """A shared-access-signature token."""

        _SECRET_FIELDS = ("token",)

        token: str

    @dataclass(frozen=True, repr=False)
    class BearerToken(_Credential):
        """A bearer token."""

        _SECRET_FIELDS = ("token",)

        token: str


class AzureRefreshableCredential:
    """What an Azure refresh function returns: one of the nested variants."""

    @dataclass(frozen=True, repr=False, init=False)
    class AccessKey(_Credential):
        """A storage-account access key valid until ``expires_after``."""

        _SECRET_FIELDS = ("key",)

        key: str
        expires_after: datetime | None

        def __init__(self, key: str, *, expires_after: datetime | None = None) -> None:
            object.__setattr__(self, "key", key)
            object.__setattr__(self, "expires_after", expires_after)

    @dataclass(frozen=True, repr=False, init=False)
    class SasToken(_Credential):
        """A SAS token valid until ``expires_after``."""

        _SECRET_FIELDS = ("token",)

        token: str
        expires_after: datetime | None

        def __init__(self, token: str, *, expires_after: datetime | None = None) -> None:
            object.__setattr__(self, "token", token)
            object.__setattr__(self, "expires_after", expires_after)

    @dataclass(frozen=True, repr=False, init=False)
    class BearerToken(_Credential):
        """A bearer token valid until ``expires_after``."""

        _SECRET_FIELDS = ("bearer",)

        bearer: str
        expires_after: datetime | None

        def __init__(self, bearer: str, *, expires_after: datetime | None = None) -> None:
            object.__setattr__(self, "bearer", bearer)
            object.__setattr__(self, "expires_after", expires_after)


class AzureCredentials:
    """How to authenticate to Azure Blob Storage: one of the nested variants."""

    @dataclass(frozen=True, repr=False)
    class Anonymous(_Credential):
        """Unsigned requests (public containers)."""

    @dataclass(frozen=True, repr=False)
    class FromEnv(_Credential):
        """Credentials from the environment (``AZURE_*`` variables, managed identity)."""

    @dataclass(frozen=True, repr=False)
    class Static(_Credential):
        """Fixed credentials (an ``AzureStaticCredentials`` variant)."""

        credentials: AnyAzureStaticCredential

    @dataclass(frozen=True, repr=False)
    class Refreshable(_Credential):
        """A pickled function returning an ``AzureRefreshableCredential`` variant."""

        pickled_function: bytes
        current: AnyAzureRefreshableCredential | None = None


# ---- the container-authorization wrapper ----------------------------------------------------


class Credentials:
    """Credentials per virtual-chunk container (``authorize_virtual_chunk_access``)."""

    @dataclass(frozen=True, repr=False)
    class S3(_Credential):
        """S3 credentials for an ``s3://`` container."""

        credentials: AnyS3Credential

    @dataclass(frozen=True, repr=False)
    class Gcs(_Credential):
        """GCS credentials for a ``gs://`` / ``gcs://`` container."""

        credentials: AnyGcsCredential

    @dataclass(frozen=True, repr=False)
    class Azure(_Credential):
        """Azure credentials for an ``az://`` / ``azure://`` / ``abfs://`` container."""

        credentials: AnyAzureCredential

    @dataclass(frozen=True, repr=False)
    class LocalFileSystemAccess(_Credential):
        """Authorizes a ``file://`` container (no credentials involved)."""

    @dataclass(frozen=True, repr=False)
    class HttpAccess(_Credential):
        """Authorizes an ``http(s)://`` container (no credentials involved)."""


AnyS3Credential: TypeAlias = (
    S3Credentials.Static | S3Credentials.Anonymous | S3Credentials.FromEnv | S3Credentials.Refreshable
)
AnyGcsStaticCredential: TypeAlias = (
    GcsStaticCredentials.ServiceAccount
    | GcsStaticCredentials.ServiceAccountKey
    | GcsStaticCredentials.ApplicationCredentials
    | GcsStaticCredentials.BearerToken
)
AnyGcsCredential: TypeAlias = (
    GcsCredentials.FromEnv | GcsCredentials.Static | GcsCredentials.Refreshable | GcsCredentials.Anonymous
)
AnyAzureStaticCredential: TypeAlias = (
    AzureStaticCredentials.AccessKey | AzureStaticCredentials.SasToken | AzureStaticCredentials.BearerToken
)
AnyAzureRefreshableCredential: TypeAlias = (
    AzureRefreshableCredential.AccessKey
    | AzureRefreshableCredential.SasToken
    | AzureRefreshableCredential.BearerToken
)
AnyAzureCredential: TypeAlias = (
    AzureCredentials.FromEnv
    | AzureCredentials.Static
    | AzureCredentials.Refreshable
    | AzureCredentials.Anonymous
)
AnyCredential: TypeAlias = (
    Credentials.S3
    | Credentials.Gcs
    | Credentials.Azure
    | Credentials.LocalFileSystemAccess
    | Credentials.HttpAccess
)

#: Sentinel authorizing a ``file://`` virtual chunk container.
LocalFileSystemAccess = Credentials.LocalFileSystemAccess()
#: Sentinel authorizing an ``http(s)://`` virtual chunk container.
HttpAccess = Credentials.HttpAccess()


def _pickle_function(function: Callable[[], Any], argument: str = "get_credentials") -> bytes:
    if not callable(function):
        raise InvalidInputError(
            f"{argument} must be callable, got {type(function).__name__}",
            ErrorKind.INVALID_CREDENTIALS,
        )
    try:
        return pickle.dumps(function)
    except Exception as error:  # pickle raises several unrelated types
        raise InvalidInputError(
            f"{argument} must be picklable (a module-level function or picklable object): {error}",
            ErrorKind.INVALID_CREDENTIALS,
        ) from error


def call_pickled_function(pickled_function: bytes) -> Any:
    """Unpickle a refreshable credential's function and call it (used by the storage layer)."""
    return pickle.loads(pickled_function)()


def is_expired(expires_after: datetime | None, *, margin_seconds: float = 0.0) -> bool:
    """Whether a credential with this expiry time must be refreshed (naive times are UTC)."""
    if expires_after is None:
        return False
    if expires_after.tzinfo is None:
        expires_after = expires_after.replace(tzinfo=UTC)
    return (expires_after - datetime.now(UTC)).total_seconds() <= margin_seconds


def _conflict(function: str, **given: Any) -> InvalidInputError:
    names = ", ".join(name for name, value in given.items() if value not in (None, False))
    return InvalidInputError(
        f"Conflicting arguments to {function}: {names or 'no usable combination'} "
        "(see the function's documentation for the accepted combinations)",
        ErrorKind.INVALID_CREDENTIALS,
    )


# ---- S3 factories ---------------------------------------------------------------------------


def s3_static_credentials(
    *,
    access_key_id: str,
    secret_access_key: str,
    session_token: str | None = None,
    expires_after: datetime | None = None,
) -> S3Credentials.Static:
    """Fixed S3 credentials.

    Parameters
    ----------
    access_key_id, secret_access_key
        The key pair.
    session_token
        Optional session token.
    expires_after
        Optional expiry time.
    """
    return S3Credentials.Static(
        S3StaticCredentials(access_key_id, secret_access_key, session_token, expires_after)
    )


def s3_anonymous_credentials() -> S3Credentials.Anonymous:
    """Unsigned S3 requests."""
    return S3Credentials.Anonymous()


def s3_from_env_credentials() -> S3Credentials.FromEnv:
    """S3 credentials from the environment."""
    return S3Credentials.FromEnv()


def s3_refreshable_credentials(
    get_credentials: Callable[[], S3StaticCredentials],
    scatter_initial_credentials: bool = False,
) -> S3Credentials.Refreshable:
    """S3 credentials obtained by calling ``get_credentials`` when needed.

    Parameters
    ----------
    get_credentials
        A picklable function returning :class:`S3StaticCredentials`; called again once the
        previous result's ``expires_after`` has passed.
    scatter_initial_credentials
        Call the function now and keep the result, so that pickled copies (e.g. on dask
        workers) start with valid credentials.

    Raises
    ------
    InvalidInputError
        If ``get_credentials`` is not callable or cannot be pickled.
    """
    pickled = _pickle_function(get_credentials)
    current = get_credentials() if scatter_initial_credentials else None
    return S3Credentials.Refreshable(pickled, current)


def s3_credentials(
    *,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    expires_after: datetime | None = None,
    anonymous: bool | None = None,
    from_env: bool | None = None,
    get_credentials: Callable[[], S3StaticCredentials] | None = None,
    scatter_initial_credentials: bool = False,
) -> AnyS3Credential:
    """Pick the S3 credential variant from keyword arguments.

    Dispatch order: (1) ``from_env`` None/True and nothing else given → FromEnv (so no
    arguments means FromEnv); (2) only ``anonymous`` → Anonymous; (3) only
    ``get_credentials`` → Refreshable; (4) key id and secret without from_env, anonymous or a
    function → Static.

    Raises
    ------
    InvalidInputError
        (also a ``ValueError``) for any other combination ("Conflicting arguments").
    """
    keys_given = (
        access_key_id is not None
        or secret_access_key is not None
        or session_token is not None
        or expires_after is not None
    )
    if (from_env is None or from_env) and not keys_given and not anonymous and get_credentials is None:
        return s3_from_env_credentials()
    if anonymous and not keys_given and not from_env and get_credentials is None:
        return s3_anonymous_credentials()
    if get_credentials is not None and not keys_given and not from_env and not anonymous:
        return s3_refreshable_credentials(get_credentials, scatter_initial_credentials)
    if (
        access_key_id is not None
        and secret_access_key is not None
        and not from_env
        and not anonymous
        and get_credentials is None
    ):
        return s3_static_credentials(
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            expires_after=expires_after,
        )
    raise _conflict(
        "s3_credentials",
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        session_token=session_token,
        expires_after=expires_after,
        anonymous=anonymous,
        from_env=from_env,
        get_credentials=get_credentials,
    )


# ---- GCS factories --------------------------------------------------------------------------


def gcs_static_credentials(
    *,
    service_account_file: str | None = None,
    service_account_key: str | None = None,
    application_credentials: str | None = None,
    bearer_token: str | None = None,
) -> AnyGcsStaticCredential:
    """Fixed GCS credentials: the first argument given, in the order of the signature.

    Raises
    ------
    InvalidInputError
        (also a ``ValueError``) when none is given.
    """
    if service_account_file is not None:
        return GcsStaticCredentials.ServiceAccount(service_account_file)
    if service_account_key is not None:
        return GcsStaticCredentials.ServiceAccountKey(service_account_key)
    if application_credentials is not None:
        return GcsStaticCredentials.ApplicationCredentials(application_credentials)
    if bearer_token is not None:
        return GcsStaticCredentials.BearerToken(bearer_token)
    raise InvalidInputError(
        "gcs_static_credentials needs one of service_account_file, service_account_key, "
        "application_credentials or bearer_token",
        ErrorKind.INVALID_CREDENTIALS,
    )


def gcs_anonymous_credentials() -> GcsCredentials.Anonymous:
    """Unsigned GCS requests."""
    return GcsCredentials.Anonymous()


def gcs_from_env_credentials() -> GcsCredentials.FromEnv:
    """GCS application default credentials from the environment."""
    return GcsCredentials.FromEnv()


def gcs_refreshable_credentials(
    get_credentials: Callable[[], GcsBearerCredential],
    scatter_initial_credentials: bool = False,
) -> GcsCredentials.Refreshable:
    """GCS credentials obtained by calling ``get_credentials`` (returns a bearer credential)."""
    pickled = _pickle_function(get_credentials)
    current = get_credentials() if scatter_initial_credentials else None
    return GcsCredentials.Refreshable(pickled, current)


def gcs_credentials(
    *,
    service_account_file: str | None = None,
    service_account_key: str | None = None,
    application_credentials: str | None = None,
    bearer_token: str | None = None,
    from_env: bool | None = None,
    anonymous: bool | None = None,
    get_credentials: Callable[[], GcsBearerCredential] | None = None,
    scatter_initial_credentials: bool = False,
) -> AnyGcsCredential:
    """Pick the GCS credential variant from keyword arguments.

    Dispatch order: ``anonymous`` → Anonymous; no static input and ``from_env`` not False →
    FromEnv; a static input and ``from_env`` not True → Static; ``get_credentials`` →
    Refreshable.  (As in the reference, ``get_credentials`` alone therefore gives FromEnv.)

    Raises
    ------
    InvalidInputError
        (also a ``ValueError``) for any other combination.
    """
    static_given = any(
        value is not None
        for value in (service_account_file, service_account_key, application_credentials, bearer_token)
    )
    if anonymous:
        return gcs_anonymous_credentials()
    if not static_given and (from_env is None or from_env):
        return gcs_from_env_credentials()
    if static_given and (from_env is None or not from_env):
        return GcsCredentials.Static(
            gcs_static_credentials(
                service_account_file=service_account_file,
                service_account_key=service_account_key,
                application_credentials=application_credentials,
                bearer_token=bearer_token,
            )
        )
    if get_credentials is not None:
        return gcs_refreshable_credentials(get_credentials, scatter_initial_credentials)
    raise _conflict(
        "gcs_credentials",
        service_account_file=service_account_file,
        service_account_key=service_account_key,
        application_credentials=application_credentials,
        bearer_token=bearer_token,
        from_env=from_env,
        anonymous=anonymous,
        get_credentials=get_credentials,
    )


# ---- Azure factories ------------------------------------------------------------------------


def azure_static_credentials(
    *,
    access_key: str | None = None,
    sas_token: str | None = None,
    bearer_token: str | None = None,
) -> AnyAzureStaticCredential:
    """Fixed Azure credentials; exactly one argument must be given.

    Raises
    ------
    InvalidInputError
        (also a ``ValueError``) when none or several are given.
    """
    given = [v for v in (access_key, sas_token, bearer_token) if v is not None]
    if len(given) != 1:
        raise InvalidInputError(
            "azure_static_credentials needs exactly one of access_key, sas_token or bearer_token",
            ErrorKind.INVALID_CREDENTIALS,
        )
    if access_key is not None:
        return AzureStaticCredentials.AccessKey(access_key)
    if sas_token is not None:
        return AzureStaticCredentials.SasToken(sas_token)
    return AzureStaticCredentials.BearerToken(given[0])


def azure_from_env_credentials() -> AzureCredentials.FromEnv:
    """Azure credentials from the environment."""
    return AzureCredentials.FromEnv()


def azure_anonymous_credentials() -> AzureCredentials.Anonymous:
    """Unsigned Azure requests."""
    return AzureCredentials.Anonymous()


def azure_refreshable_credentials(
    get_credentials: Callable[[], AnyAzureRefreshableCredential],
    scatter_initial_credentials: bool = False,
) -> AzureCredentials.Refreshable:
    """Azure credentials obtained by calling ``get_credentials`` when needed."""
    pickled = _pickle_function(get_credentials)
    current = get_credentials() if scatter_initial_credentials else None
    return AzureCredentials.Refreshable(pickled, current)


def azure_credentials(
    *,
    access_key: str | None = None,
    sas_token: str | None = None,
    bearer_token: str | None = None,
    from_env: bool | None = None,
    anonymous: bool | None = None,
    get_credentials: Callable[[], AnyAzureRefreshableCredential] | None = None,
    scatter_initial_credentials: bool = False,
) -> AnyAzureCredential:
    """Pick the Azure credential variant from keyword arguments.

    Dispatch order: ``anonymous`` → Anonymous; ``get_credentials`` → Refreshable; no static
    input (and ``from_env`` not False) → FromEnv; a static input (and ``from_env`` not True)
    → Static.

    Raises
    ------
    InvalidInputError
        (also a ``ValueError``) for any other combination.
    """
    static_given = any(v is not None for v in (access_key, sas_token, bearer_token))
    if anonymous:
        return azure_anonymous_credentials()
    if get_credentials is not None:
        return azure_refreshable_credentials(get_credentials, scatter_initial_credentials)
    if not static_given and (from_env is None or from_env):
        return azure_from_env_credentials()
    if static_given and (from_env is None or not from_env):
        return AzureCredentials.Static(
            azure_static_credentials(
                access_key=access_key, sas_token=sas_token, bearer_token=bearer_token
            )
        )
    raise _conflict(
        "azure_credentials",
        access_key=access_key,
        sas_token=sas_token,
        bearer_token=bearer_token,
        from_env=from_env,
        anonymous=anonymous,
    )


# ---- containers -----------------------------------------------------------------------------

# The variants of each family, for ``isinstance`` checks (also used by storage and core).
S3_CREDENTIAL_TYPES = (
    S3Credentials.Static,
    S3Credentials.Anonymous,
    S3Credentials.FromEnv,
    S3Credentials.Refreshable,
)
GCS_CREDENTIAL_TYPES = (
    GcsCredentials.Static,
    GcsCredentials.Anonymous,
    GcsCredentials.FromEnv,
    GcsCredentials.Refreshable,
)
AZURE_CREDENTIAL_TYPES = (
    AzureCredentials.Static,
    AzureCredentials.Anonymous,
    AzureCredentials.FromEnv,
    AzureCredentials.Refreshable,
)
#: What may authorize a virtual chunk container (besides None).
CONTAINER_CREDENTIAL_TYPES = (
    Credentials.S3,
    Credentials.Gcs,
    Credentials.Azure,
    Credentials.LocalFileSystemAccess,
    Credentials.HttpAccess,
)


def wrap_credential(value: Any) -> Any:
    """``Credentials.S3/Gcs/Azure(value)`` for a raw S3/GCS/Azure credential; else ``value``."""
    if isinstance(value, S3_CREDENTIAL_TYPES):
        return Credentials.S3(value)
    if isinstance(value, GCS_CREDENTIAL_TYPES):
        return Credentials.Gcs(value)
    if isinstance(value, AZURE_CREDENTIAL_TYPES):
        return Credentials.Azure(value)
    return value


def containers_credentials(
    m: Mapping[str, AnyS3Credential | AnyGcsCredential | AnyAzureCredential | AnyCredential | None],
) -> dict[str, AnyCredential | None]:
    """Wrap raw credentials per container url prefix in ``Credentials.S3/Gcs/Azure``.

    Sentinels (``LocalFileSystemAccess``, ``HttpAccess``), already wrapped values and None pass
    through unchanged.  Use the result as ``authorize_virtual_chunk_access``.

    Raises
    ------
    InvalidInputError
        (also a ``ValueError``) for a value of any other type, naming its prefix.
    """
    result: dict[str, AnyCredential | None] = {}
    for prefix, value in m.items():
        wrapped = wrap_credential(value)
        if wrapped is not None and not isinstance(wrapped, CONTAINER_CREDENTIAL_TYPES):
            raise InvalidInputError(
                f"unknown credential type {type(value).__name__} for container {prefix!r}",
                ErrorKind.INVALID_CREDENTIALS,
            )
        result[prefix] = wrapped
    return result
