"""mda's one settings object.

Values come, highest priority first, from `MDA_*` environment variables, then from an
optional TOML file named by `MDA_CONFIG` (keys are the field names in lower case, e.g.
`lmtp_listen = "127.0.0.1:24"`), then from the defaults below.

Sizes are in bytes, durations in seconds.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

if TYPE_CHECKING:
    from mda.store.engine import EngineOptions

DEFAULT_DATABASE_PATH = Path("var") / "mda.sqlite3"

# PostgreSQL's statement_timeout and lock_timeout and SQLite's busy_timeout are C ints of
# milliseconds: 2147483647 ms is the longest each accepts, and a value under 1 ms is 0 (none).
MAX_MILLISECOND_TIMEOUT = 2_147_483  # seconds (24.8 days)
MIN_CONNECT_TIMEOUT = 0.1  # seconds; no database connection opens faster


def parse_size(text: str | int) -> int:
    """Parse a size such as `500K`, `10M`, `1G` or plain bytes.

    Args:
        text: the size; a suffix K, M or G (either case) multiplies by 1024, 1024², 1024³.

    Returns:
        The size in bytes (>= 0).

    Raises:
        ValueError: the text is not a non-negative integer with an optional suffix.
    """
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative: {text}")
        return text
    value = text.strip()
    multiplier = 1
    if value[-1:].upper() in {"K", "M", "G"}:
        multiplier = {"K": 1024, "M": 1024**2, "G": 1024**3}[value[-1].upper()]
        value = value[:-1]
    if not value.isdigit():
        raise ValueError(f"not a size: {text!r} (use bytes or a number with K, M or G)")
    return int(value) * multiplier


DATABASE_URL_FORMS = ("sqlite+aiosqlite:///PATH (relative, or ////absolute) or "
                      "postgresql+asyncpg://USER[:PASSWORD]@HOST[:PORT]/DATABASE")

# Query parameters of a postgresql+asyncpg URL that reach asyncpg's connect() as text and
# that it takes as text; `sslmode` is libpq's name, which mda.store.engine passes as `ssl`.
ASYNCPG_URL_PARAMETERS = frozenset({
    "ssl", "sslmode", "host", "port", "passfile", "target_session_attrs", "krbsrvname",
    "gsslib", "prepared_statement_cache_size"})


def check_database_url(url: str) -> str:
    """Check that a database URL names a backend and driver mda ships, before any import
    of SQLAlchemy (it is cheap enough for every command).

    Args:
        url: the `MDA_DATABASE_URL` value.

    Returns:
        The URL, stripped of surrounding white space.

    Raises:
        ValueError: one line saying what is wrong and the forms mda takes
            (`DATABASE_URL_FORMS`): no `scheme://`, a database other than SQLite or
            PostgreSQL, a driver other than aiosqlite or asyncpg (including none, such as
            `postgresql://`, which SQLAlchemy would load psycopg for), or a PostgreSQL query
            parameter asyncpg does not take.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    backend, _, driver = scheme.lower().partition("+")
    if not sep or not backend or not backend.replace("_", "").isalnum():
        raise ValueError(f"not a database URL: use {DATABASE_URL_FORMS}")
    if backend in ("postgresql", "postgres"):
        if driver != "asyncpg":
            raise ValueError(f"the driver of {scheme}:// is not one mda ships; use "
                             f"{DATABASE_URL_FORMS}")
        query = rest.partition("?")[2]
        names = {part.partition("=")[0] for part in query.split("&") if part}
        unknown = sorted(names - ASYNCPG_URL_PARAMETERS)
        if unknown:
            raise ValueError(
                f"query parameter {', '.join(map(repr, unknown))} is not one asyncpg takes "
                f"({', '.join(sorted(ASYNCPG_URL_PARAMETERS))}; e.g. ssl=require) in "
                f"{DATABASE_URL_FORMS}")
    elif backend == "sqlite":
        if driver != "aiosqlite":
            raise ValueError(f"the driver of {scheme}:// is not one mda ships; use "
                             f"{DATABASE_URL_FORMS}")
    else:
        raise ValueError(f"{backend} is not a database mda supports; use {DATABASE_URL_FORMS}")
    return url


class SettingsError(ValueError):
    """A setting is invalid, or the TOML file named by `MDA_CONFIG` cannot be read, is not
    valid TOML, or has a key that is not a setting. The message is one line naming the
    setting as the operator wrote it (`MDA_FOO` or `foo in /path/file.toml`)."""


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by MDA_CONFIG, if any.

    Raises:
        SettingsError: the file cannot be read, is not TOML, or has an unknown key.
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.path = os.environ.get("MDA_CONFIG") or None
        self._data: dict[str, Any] = {}
        if self.path:
            self._data = _read_toml(self.path, settings_cls.model_fields)

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by pydantic
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _read_toml(path: str, fields: dict[str, Any]) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read MDA_CONFIG file {path}: {exc.strerror or exc}") \
            from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"MDA_CONFIG file {path} is not valid TOML: {exc}") from exc
    data = {key.lower(): value for key, value in raw.items()}
    unknown = sorted(key for key in raw if key.lower() not in fields)
    if unknown:
        raise SettingsError(f"unknown setting {', '.join(map(repr, unknown))} in MDA_CONFIG "
                            f"file {path} (keys are setting names in lower case, e.g. "
                            f"lmtp_listen)")
    return data


class Settings(BaseSettings):
    """All of mda's settings. Field `foo_bar` is read from `MDA_FOO_BAR`."""

    model_config = SettingsConfigDict(env_prefix="MDA_", frozen=True, extra="ignore")

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{DEFAULT_DATABASE_PATH}",
        description="SQLAlchemy async URL, sqlite+aiosqlite:///PATH or "
        "postgresql+asyncpg://USER@HOST/DB; default a SQLite file under ./var/",
    )
    # Connection pool and timeouts of `mda serve` (mda.store.engine.EngineOptions). Each
    # process (each worker) has its own pool.
    database_pool_size: int = Field(
        default=10, ge=1, description="connections each mda serve process keeps pooled")
    database_max_overflow: int = Field(
        default=10, ge=0, description="connections opened beyond the pool under load")
    database_pool_timeout: float = Field(
        default=10.0, gt=0, le=MAX_MILLISECOND_TIMEOUT, allow_inf_nan=False,
        description="seconds a delivery waits for a free pooled connection before 451 4.3.0")
    database_connect_timeout: float = Field(
        default=10.0, ge=MIN_CONNECT_TIMEOUT, le=MAX_MILLISECOND_TIMEOUT, allow_inf_nan=False,
        description="seconds to open a PostgreSQL connection")
    database_statement_timeout: float = Field(
        default=30.0, ge=0, le=MAX_MILLISECOND_TIMEOUT, allow_inf_nan=False,
        description="PostgreSQL statement_timeout in seconds (a longer statement is cancelled "
        "and the recipient gets 451 4.3.0); the client gives up 2 s later; 0 = none")
    database_lock_timeout: float = Field(
        default=0.0, ge=0, le=MAX_MILLISECOND_TIMEOUT, allow_inf_nan=False,
        description="PostgreSQL lock_timeout in seconds; 0 = only statement_timeout applies")
    database_busy_timeout: float = Field(
        default=30.0, ge=0, le=MAX_MILLISECOND_TIMEOUT, allow_inf_nan=False,
        description="seconds a SQLite connection waits for another process's write lock")
    workers: int = Field(
        default=1, ge=1, le=256,
        description="mda serve processes sharing the listening sockets (pre-fork); 1 = "
        "one process, no supervisor")
    lmtp_listen: str = Field(
        default="127.0.0.1:2424", description="host:port or unix:/path for the LMTP listener"
    )
    hostname: str = Field(default_factory=lambda: os.uname().nodename)
    max_message_size: int = Field(default=50 * 1024 * 1024, ge=1, description="bytes")
    quota_full_tempfail: bool = Field(
        default=False, description="answer 452 4.2.2 instead of 552 5.2.2 when over quota"
    )
    mailbox_autocreate: bool = Field(
        default=False, description="fileinto creates missing mailboxes even without :create"
    )
    recipient_delimiter: str = Field(default="+", description="subaddress delimiter characters")
    save_to_detail_mailbox: bool = Field(
        default=False,
        description="user+detail@dom is kept in mailbox `detail` when it exists (or with "
        "mailbox_autocreate), else INBOX, like Dovecot's lmtp_save_to_detail_mailbox")
    # Outbound mail (redirect, vacation, notify), handed to the MTA (mda.outbound).
    submission_url: str = Field(
        default="",
        description="smtp://HOST[:PORT], smtp+starttls://... or smtps://..., optionally with "
        "USER:PASSWORD@; empty = no outbound mail (redirect/vacation/notify keep the message "
        "and record an error)")
    submission_timeout: float = Field(
        default=30.0, gt=0, description="seconds each SMTP step of a submission may take")
    submission_budget: float = Field(
        default=60.0, gt=0,
        description="seconds, counted from the end of DATA, that all submissions of one LMTP "
        "transaction may take together; once spent, recipients still waiting to redirect or "
        "notify get 451 4.3.0 at once (keep it well under the MTA's LMTP reply timeout, "
        "Postfix lmtp_data_done_timeout)")
    delivery_budget: float = Field(
        default=300.0, gt=0, allow_inf_nan=False,
        description="seconds, counted from the end of DATA, that the deliveries of one LMTP "
        "transaction may take together, waits for the database included; once spent, the "
        "recipient being delivered is rolled back and it and every later one get 451 4.3.0 "
        "at once (keep it well under the MTA's LMTP reply timeout, Postfix "
        "lmtp_data_done_timeout, 600 s)")
    redirect_envelope_sender: str = Field(
        default="sender",
        description='MAIL FROM of a redirect: "sender" (the original envelope sender), '
        '"recipient" (the user), "orig_recipient" (the RCPT TO as given) or "<address>" '
        '("<>" for the null sender)')
    sieve_redirect_duplicate_period: int = Field(
        default=12 * 3600, ge=0,
        description="seconds during which the same message is not redirected to the same "
        "address twice for a user (Message-ID, else content); 0 = no such record")
    sieve_scripts_dir: Path = Field(
        default=Path("sieve_scripts"), description="global/, before.d/, after.d/, default.sieve"
    )
    spamtest_header: str = Field(
        default="",
        description='RFC 5235 spamtest: "Header-Name: regex" whose group 1 is the spam score '
        '(e.g. "X-Spam-Score: score=(-?[0-9]+(\\.[0-9]+)?)"); empty = not configured',
    )
    spamtest_max: float = Field(default=10.0, gt=0, description="the score meaning certainly spam")
    virustest_header: str = Field(
        default="", description='RFC 5235 virustest: "Header-Name" or "Header-Name: regex"'
    )
    virustest_text_values: str = Field(
        default="",
        description='status texts of the virustest levels 0..5, '
        'e.g. "1=clean,3=suspicious,5=infected"',
    )
    # Sieve engine limits (mda.sieve.Limits; built in mda.sieve_config). Hitting a run-time
    # limit is a run-time error (implicit keep), never a hung worker.
    sieve_max_script_size: int = Field(
        default=1024 * 1024, ge=1, description="bytes a Sieve script may have (K/M/G allowed)")
    sieve_max_actions: int = Field(
        default=32, ge=1, description="actions one script run may produce")
    sieve_max_redirects: int = Field(default=4, ge=0, description="redirects in one script run")
    sieve_max_include_depth: int = Field(
        default=10, ge=0, description="nesting of include (RFC 6609)")
    sieve_max_includes: int = Field(
        default=255, ge=0, description="scripts included in one run (RFC 6609)")
    sieve_max_nesting: int = Field(
        default=32, ge=1, description="nesting depth of blocks and tests in a script")
    sieve_max_variable_size: int = Field(
        default=4096, ge=1, description="characters a variable value may hold (RFC 5229 §3)")
    sieve_regex_timeout: float = Field(
        default=0.1, gt=0, description="seconds a single :regex match may take")
    sieve_max_steps: int = Field(
        default=100_000, ge=1, description="commands and tests evaluated in one run")
    sieve_duplicate_default_period: int = Field(
        default=12 * 3600, ge=0,
        description="seconds a duplicate record lives without :seconds (RFC 7352 §3.3)")
    sieve_duplicate_max_period: int = Field(
        default=2 * 86400, ge=0,
        description="largest :seconds honoured by duplicate, in seconds; 0 = no maximum")
    sieve_vacation_min_period: int = Field(
        default=86400, ge=0, description="smallest vacation :days/:seconds period, in seconds")
    sieve_vacation_default_period: int = Field(
        default=7 * 86400, ge=0, description="vacation period without :days/:seconds, seconds")
    sieve_vacation_max_period: int = Field(
        default=0, ge=0, description="largest vacation period in seconds; 0 = no maximum")
    sieve_editheader_max_header_size: int = Field(
        default=2048, ge=1, description="bytes an addheader value may have (RFC 5293)")
    sieve_editheader_forbid_add: str = Field(
        default="", description="comma-separated header names addheader may not add")
    sieve_editheader_forbid_delete: str = Field(
        default="", description="comma-separated header names deleteheader may not delete")
    # Per-user Sieve script quotas, enforced by ManageSieve PUTSCRIPT and `mda sieve put`
    # (RFC 5804 §1.3 QUOTA/MAXSCRIPTS, QUOTA/MAXSTORAGE; the size of one script is
    # sieve_max_script_size, QUOTA/MAXSIZE). 0 = no limit.
    sieve_max_scripts: int = Field(default=25, ge=0, description="scripts one user may store")
    sieve_max_storage: int = Field(
        default=8 * 1024 * 1024, ge=0,
        description="bytes all of one user's scripts may hold together (K/M/G allowed)")
    # ManageSieve (RFC 5804).
    managesieve_listen: str = Field(
        default="127.0.0.1:4190",
        description="host:port or unix:/path for ManageSieve; empty = disabled")
    managesieve_tls_listen: str = Field(
        default="", description="host:port for ManageSieve over implicit TLS; empty = disabled")
    managesieve_max_connections: int = Field(
        default=200, ge=1, description="ManageSieve connections open at once")
    managesieve_idle_timeout: float = Field(
        default=300.0, gt=0, description="seconds a ManageSieve connection may sit idle")
    managesieve_auth_failure_delay: float = Field(
        default=1.0, ge=0, description="seconds before answering a failed AUTHENTICATE")
    managesieve_auth_max_failures: int = Field(
        default=10, ge=1, description="failed logins per peer address within the window "
        "before that peer gets NO (TRYLATER)")
    managesieve_auth_failure_window: float = Field(
        default=300.0, gt=0, description="seconds failed logins are remembered per peer")
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate (chain) for STARTTLS and implicit TLS")
    tls_key: Path | None = Field(default=None, description="PEM private key for tls_cert")
    allow_plaintext_auth: bool = Field(
        default=False, description="allow PLAIN/LOGIN without TLS from non-loopback peers")
    # Health checks and metrics (mda.http).
    http_listen: str = Field(
        default="", description="host:port or unix:/path for the HTTP listener serving "
        "/healthz and /metrics; empty = disabled")
    log_level: str = Field(default="INFO")
    shutdown_timeout: float = Field(
        default=30.0, ge=0, description="seconds to let deliveries in flight finish on SIGTERM"
    )

    @field_validator("max_message_size", "sieve_max_script_size", "sieve_max_storage",
                     mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("database_statement_timeout", "database_lock_timeout",
                     "database_busy_timeout")
    @classmethod
    def _millisecond_timeout(cls, value: float) -> float:
        if 0 < value < 0.001:
            raise ValueError(f"{value:g} s is under the 1 ms these timeouts count in; use 0 "
                             f"(none) or 0.001 to {MAX_MILLISECOND_TIMEOUT} seconds")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return check_database_url(value)  # ValueError names the problem

    @field_validator("spamtest_header", "virustest_header")
    @classmethod
    def _header_spec(cls, value: str) -> str:
        if value:
            from mda.sieve.extensions.spamtest import parse_header_spec

            parse_header_spec(value)  # ValueError names the problem
        return value

    @field_validator("virustest_text_values")
    @classmethod
    def _text_values(cls, value: str) -> str:
        from mda.sieve.extensions.virustest import parse_text_values

        parse_text_values(value)  # ValueError names the problem
        return value

    @field_validator("submission_url")
    @classmethod
    def _submission_url(cls, value: str) -> str:
        if value.strip():
            from mda.outbound.submission import SubmissionTarget

            SubmissionTarget.parse(value)  # ValueError names the problem
        return value.strip()

    @field_validator("redirect_envelope_sender")
    @classmethod
    def _redirect_sender(cls, value: str) -> str:
        from mda.outbound.compose import parse_sender_policy

        return parse_sender_policy(value)  # ValueError names the problem

    @field_validator("tls_cert", "tls_key", mode="before")
    @classmethod
    def _optional_path(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        if self.managesieve_tls_listen and self.tls_cert is None:
            raise ValueError("managesieve_tls_listen needs tls_cert and tls_key")
        return self

    def engine_options(self) -> EngineOptions:
        """The `database_*` pool and timeout settings for `mda.store.Store`.

        Returns:
            An `mda.store.engine.EngineOptions`.
        """
        from mda.store.engine import EngineOptions

        return EngineOptions(
            pool_size=self.database_pool_size, max_overflow=self.database_max_overflow,
            pool_timeout=self.database_pool_timeout,
            connect_timeout=self.database_connect_timeout,
            statement_timeout=self.database_statement_timeout,
            lock_timeout=self.database_lock_timeout,
            busy_timeout=self.database_busy_timeout)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


def _setting_name(field: str) -> str:
    """How the operator wrote setting `field`: `MDA_FIELD` when the environment sets it
    (environment variables win), else `field in FILE` when the TOML file does."""
    env_name = f"MDA_{field.upper()}"
    if any(key.upper() == env_name for key in os.environ):
        return env_name
    path = os.environ.get("MDA_CONFIG")
    if path and field in _read_toml(path, Settings.model_fields):
        return f"{field} in {path}"
    return env_name


# MDA_* environment variables that are not settings: the TOML file's name, the test suite's
# (MDA_TEST_* too) and the compose file's password variable (docs/docker.md).
NOT_SETTINGS = frozenset({"MDA_CONFIG", "MDA_DIFFERENTIAL_EXAMPLES", "MDA_DB_PASSWORD"})


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse an `MDA_*` environment variable that is no setting (a misspelt one would be
    ignored silently, e.g. leaving mda on its default SQLite file).

    Args:
        environ: the environment; None = `os.environ`. Names are compared ignoring case,
            as settings are read.

    Raises:
        SettingsError: one line naming the first unknown variable and, when one is close,
            the setting probably meant (difflib).
    """
    known = {f"MDA_{field.upper()}" for field in Settings.model_fields} | NOT_SETTINGS
    environ = os.environ if environ is None else environ
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("MDA_") or upper in known or upper.startswith("MDA_TEST_"):
            continue
        close = difflib.get_close_matches(upper, sorted(known - NOT_SETTINGS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SettingsError(f"unknown environment variable {name}{hint}: MDA_* variables are "
                            f"mda's settings; unset it or correct its name")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once.

    Raises:
        SettingsError: a setting has an invalid value (the message names the environment
            variable, or the TOML key and file, it came from), or the MDA_CONFIG file cannot
            be read, is not TOML or has an unknown key, or an `MDA_*` environment variable
            is no setting (`check_environment`).
    """
    check_environment()
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc") or ()
        name = _setting_name(str(loc[0])) if loc else "settings"
        reason = first["msg"].removeprefix("Value error, ")  # pydantic's prefix
        raise SettingsError(f"invalid setting {name}: {reason}") from None
