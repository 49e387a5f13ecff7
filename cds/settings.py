"""One settings model for the whole service: environment variables ``TRIAL_CDS_*`` and an optional
config file (``TRIAL_CDS_CONFIG_FILE``, YAML or .env style). Secure by default: JWT authentication on,
no FHIR server allow-listed, no CORS origin allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict


def _default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / 'var' / 'trial-cds.sqlite3'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAL_CDS_", extra="ignore")

    # Authentication of CDS clients (EHRs) by the CDS Hooks 2.0 JWT.
    auth: Literal["jwt", "none"] = "jwt"
    clients_file: Path | None = None
    audience: str | None = None
    jwt_leeway_s: int = 60
    jwks_timeout_s: float = 2.0
    jwks_cache_s: int = 300

    # FHIR servers the service may contact; empty means none.
    fhir_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    time_budget_s: float = 3.0
    max_pages: int = 20
    page_size: int = 200

    # Storage of feedback (and the JWT replay cache).
    database_url: str = Field(default_factory=_default_database_url)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Limits on input.
    max_body_bytes: int = 16 * 1024 * 1024
    max_resources_per_key: int = 20_000
    max_json_depth: int = 64
    max_string_length: int = 1_000_000

    # What the service shows.
    show_not_eligible: bool = False
    public_base_url: str | None = None
    demo: bool = False
    trials_dir: Path | None = None
    log_level: str = "INFO"

    @field_validator("fhir_allowlist", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls), file_secret_settings)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads ``TRIAL_CDS_CONFIG_FILE`` (YAML mapping of the same names, without the prefix)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        import os

        path = os.environ.get("TRIAL_CDS_CONFIG_FILE")
        if not path:
            return {}
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config file must hold a mapping of setting names to values")
        return {str(k).lower().removeprefix("trial_cds_"): v for k, v in data.items()}
