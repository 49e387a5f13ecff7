"""One settings model for the whole service: environment variables ``TRIAL_CDS_*`` and an optional
config file (``TRIAL_CDS_CONFIG_FILE``: a YAML mapping of the same names, without the prefix; the
environment wins over the file). Secure by default: JWT authentication on, no FHIR server allow-listed,
no CORS origin allowed. An invalid value, an unknown name in the config file or an unreadable config file
is an error at start-up (:class:`SettingsError` or pydantic's ``ValidationError``), never a silent default."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

#: The default port of each scheme a FHIR base URL may use.
DEFAULT_PORTS = {"http": 80, "https": 443}


class BaseUrlError(ValueError):
    """Not a FHIR base URL; ``reason`` completes a sentence about the URL ("has an invalid port")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise_base_url(url: str) -> str:
    """``scheme://host[:port]/path`` with scheme and host lower-cased, the default port and the trailing
    slash removed: the one spelling a FHIR base URL is compared in (the allow-list, a request's
    fhirServer). Raises :class:`BaseUrlError` for anything that is not such a URL."""
    if not isinstance(url, str) or not url.strip():
        raise BaseUrlError("is empty")
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise BaseUrlError("is not a valid URL") from None
    try:
        port = parts.port
    except ValueError:
        raise BaseUrlError("has an invalid port") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host:
        raise BaseUrlError("must be an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise BaseUrlError("must not contain credentials")
    if parts.query or parts.fragment:
        raise BaseUrlError("must not contain a query or a fragment")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    return f"{scheme}://{netloc}{path}"


class SettingsError(ValueError):
    """The configuration cannot be used (config file missing, unreadable, not a mapping, unknown names)."""


def _default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / 'var' / 'trial-cds.sqlite3'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAL_CDS_", extra="ignore")

    # Authentication of CDS clients (EHRs) by the CDS Hooks 2.0 JWT.
    auth: Literal["jwt", "none"] = "jwt"
    clients_file: Path | None = None
    audience: str | None = None
    jwt_leeway_s: int = Field(default=60, ge=0, le=600)
    jwks_timeout_s: float = Field(default=2.0, gt=0, le=30)
    jwks_cache_s: int = Field(default=300, ge=0)

    # FHIR servers the service may contact; empty means none.
    fhir_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    time_budget_s: float = Field(default=3.0, gt=0, le=60)
    max_pages: int = Field(default=20, ge=1)
    page_size: int = Field(default=200, ge=1, le=1000)

    # Storage of feedback (and the JWT replay cache).
    database_url: str = Field(default_factory=_default_database_url)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Limits on input.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_resources_per_key: int = Field(default=20_000, ge=1)
    max_json_depth: int = Field(default=64, ge=8, le=1000)
    max_string_length: int = Field(default=1_000_000, ge=64)

    # What the service shows.
    show_not_eligible: bool = False
    #: Cards of single trials in a patient-view answer; the trials beyond are named on one more card.
    max_cards: int = Field(default=3, ge=1, le=100)
    public_base_url: str | None = None
    demo: bool = False
    trials_dir: Path | None = None
    log_level: str = "INFO"

    @field_validator("fhir_allowlist", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [part.strip().rstrip("/") if isinstance(part, str) else part for part in value if part != ""]
        return value

    @field_validator("fhir_allowlist")
    @classmethod
    def _fhir_base_urls(cls, value: list[str]) -> list[str]:
        """Each entry checked and normalised here, once: a request's fhirServer, normalised the same way,
        is then looked up as it is."""
        normalised: list[str] = []
        for url in value:
            try:
                base = normalise_base_url(url)
            except BaseUrlError as exc:
                raise ValueError(f"{url!r} {exc.reason}") from None
            host = urlsplit(base).hostname or ""
            if base.startswith("http:") and not is_loopback_host(host):
                raise ValueError(f"{url!r}: use https (http is allowed only for loopback hosts)")
            normalised.append(base)
        return normalised

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("https", "http") or not parts.hostname or parts.path):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _WithoutFlags(settings_cls, env_settings),
            _WithoutFlags(settings_cls, _ConfigFileSource(settings_cls)),
            file_secret_settings,
        )


# Turned on only by `trial-cds serve --demo`, never by the environment or a config file: demo mode turns
# authentication off, and the only other way to do that must be an explicit TRIAL_CDS_AUTH=none.
_CLI_ONLY = frozenset({"demo"})


class _WithoutFlags(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._inner().items() if k not in _CLI_ONLY}


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: where plain http is acceptable (development only)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads ``TRIAL_CDS_CONFIG_FILE`` (YAML mapping of the same names, without the prefix)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        import os

        path = os.environ.get("TRIAL_CDS_CONFIG_FILE")
        if not path:
            return {}
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise SettingsError(f"TRIAL_CDS_CONFIG_FILE {path}: cannot be read ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"TRIAL_CDS_CONFIG_FILE {path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise SettingsError(f"TRIAL_CDS_CONFIG_FILE {path}: must hold a mapping of setting names to values")
        values = {str(k).lower().removeprefix("trial_cds_"): v for k, v in data.items()}
        unknown = sorted(set(values) - set(self.settings_cls.model_fields))
        if unknown:  # a typo must not silently leave a security setting at its default
            raise SettingsError(f"TRIAL_CDS_CONFIG_FILE {path}: unknown settings: {', '.join(unknown)}")
        return values
