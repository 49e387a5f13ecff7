"""Configuration: one settings model, from ``TRIAL_CDS_*`` environment variables and an optional YAML config
file (``TRIAL_CDS_CONFIG_FILE``); secure defaults; invalid values are a clear error at start-up; and the
README's table lists every setting with its real default."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from cds.settings import Settings, SettingsError

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    import os

    for name in list(os.environ):
        if name.startswith("TRIAL_CDS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: Any) -> Path:
    path = tmp_path / "trial-cds.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    monkeypatch.setenv("TRIAL_CDS_CONFIG_FILE", str(path))
    return path


def test_secure_defaults(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.auth == "jwt"
    assert settings.clients_file is None and settings.audience is None
    assert settings.fhir_allowlist == [] and settings.cors_origins == []
    assert settings.demo is False and settings.show_not_eligible is False
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'trial-cds.sqlite3'}"


def test_environment_variables_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAL_CDS_AUTH", "none")
    monkeypatch.setenv(
        "TRIAL_CDS_FHIR_ALLOWLIST", " https://ehr.example.org/fhir/ ,http://127.0.0.1:8080/fhir,, https://b.example/r4"
    )
    monkeypatch.setenv("TRIAL_CDS_CORS_ORIGINS", "https://sandbox.cds-hooks.org, http://localhost:3000")
    monkeypatch.setenv("TRIAL_CDS_TIME_BUDGET_S", "2.5")
    monkeypatch.setenv("TRIAL_CDS_SHOW_NOT_ELIGIBLE", "true")
    monkeypatch.setenv("TRIAL_CDS_MAX_BODY_BYTES", "1048576")
    monkeypatch.setenv("TRIAL_CDS_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.auth == "none"
    assert settings.fhir_allowlist == [
        "https://ehr.example.org/fhir",
        "http://127.0.0.1:8080/fhir",
        "https://b.example/r4",
    ]
    assert settings.cors_origins == ["https://sandbox.cds-hooks.org", "http://localhost:3000"]
    assert settings.time_budget_s == 2.5 and settings.show_not_eligible is True
    assert settings.max_body_bytes == 1048576 and settings.log_level == "DEBUG"


def test_config_file_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file(
        tmp_path,
        monkeypatch,
        {
            "audience": "https://cds.example.org/cds-services",
            "fhir_allowlist": ["https://ehr.example.org/fhir/"],
            "TRIAL_CDS_MAX_PAGES": 7,  # the prefixed spelling works too
            "time_budget_s": 5,
            "clients_file": str(tmp_path / "clients.yaml"),
        },
    )
    monkeypatch.setenv("TRIAL_CDS_TIME_BUDGET_S", "1.5")  # the environment wins over the file
    settings = Settings()
    assert settings.audience == "https://cds.example.org/cds-services"
    assert settings.fhir_allowlist == ["https://ehr.example.org/fhir"]
    assert settings.max_pages == 7 and settings.time_budget_s == 1.5
    assert settings.clients_file == tmp_path / "clients.yaml"
    assert Settings(time_budget_s=0.5).time_budget_s == 0.5  # and explicit arguments win over both


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AUTH", "off", "auth"),
        ("TIME_BUDGET_S", "soon", "time_budget_s"),
        ("TIME_BUDGET_S", "0", "time_budget_s"),
        ("MAX_PAGES", "0", "max_pages"),
        ("PAGE_SIZE", "-5", "page_size"),
        ("MAX_BODY_BYTES", "12", "max_body_bytes"),
        ("MAX_JSON_DEPTH", "2", "max_json_depth"),
        ("SHOW_NOT_ELIGIBLE", "maybe", "show_not_eligible"),
        ("LOG_LEVEL", "loud", "log_level"),
        ("FHIR_ALLOWLIST", "ftp://ehr.example.org/fhir", "fhir_allowlist"),
        ("FHIR_ALLOWLIST", "ehr.example.org/fhir", "fhir_allowlist"),
        ("FHIR_ALLOWLIST", "http://ehr.example.org/fhir", "use https"),
        ("FHIR_ALLOWLIST", "https://user:pw@ehr.example.org/fhir", "credentials"),
        ("FHIR_ALLOWLIST", "https://ehr.example.org:99999/fhir", "invalid port"),
        ("CORS_ORIGINS", "https://sandbox.example.org/app", "not an origin"),
    ],
)
def test_invalid_values_are_a_clear_error(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(f"TRIAL_CDS_{name}", value)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"fhir_alowlist": ["https://ehr.example.org/fhir"]}, "unknown settings: fhir_alowlist"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("auth: [unclosed\n", "not valid YAML"),
    ],
    ids=["typo", "not-a-mapping", "bad-yaml"],
)
def test_config_file_problems_are_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: Any, message: str
) -> None:
    path = config_file(tmp_path, monkeypatch, content)
    with pytest.raises(SettingsError, match=re.escape(message)) as info:
        Settings()
    assert str(path) in str(info.value)


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAL_CDS_CONFIG_FILE", str(tmp_path / "nowhere.yaml"))
    with pytest.raises(SettingsError, match="cannot be read"):
        Settings()


def test_serve_with_a_bad_setting_exits_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from cds.cli import app

    started: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: started.append(a))
    monkeypatch.setenv("TRIAL_CDS_FHIR_ALLOWLIST", "http://ehr.example.org/fhir")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "invalid configuration" in result.output and "fhir_allowlist" in result.output
    assert "Traceback" not in result.output
    assert not started


# ---------------------------------------------------------------------------------------------------
# The README's configuration table.


def _readme_table() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## For hospital IT: configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`(TRIAL_CDS_[A-Z_]+|_[A-Z_]+)`", cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split("/")] if "/" in cells[1] else [cells[1].strip("`")]
        if len(defaults) != len(names):
            defaults = [cells[1]] * len(names)
        for name, default in zip(names, defaults, strict=True):
            full = name if name.startswith("TRIAL_CDS_") else f"TRIAL_CDS{name}"
            rows[full] = default
    return rows


def test_readme_lists_every_setting_with_its_default() -> None:
    rows = _readme_table()
    fields = {f"TRIAL_CDS_{name.upper()}" for name in Settings.model_fields}
    assert fields - set(rows) == set(), "settings missing from the README table"
    assert set(rows) - fields - {"TRIAL_CDS_CONFIG_FILE"} == set(), "README lists settings that do not exist"
    for name, field in Settings.model_fields.items():
        written = rows[f"TRIAL_CDS_{name.upper()}"]
        default = field.get_default(call_default_factory=False)
        if isinstance(default, bool):
            assert written == str(default).lower(), name
        elif isinstance(default, int | float) and not isinstance(default, bool):
            assert float(written.replace("_", "")) == float(default), (name, written, default)
        elif isinstance(default, str):
            assert written == default, (name, written, default)


def test_demo_mode_cannot_be_turned_on_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Demo mode turns authentication off: only `serve --demo` may do that (or an explicit AUTH=none).
    monkeypatch.setenv("TRIAL_CDS_DEMO", "true")
    settings = Settings()
    assert settings.demo is False
    assert settings.auth == "jwt"


def test_the_fhir_allow_list_is_normalised_once_when_the_settings_load() -> None:
    settings = Settings(auth="none", fhir_allowlist=["HTTPS://EHR.Example.org:443/fhir/", "http://127.0.0.1:8080/r4"])
    assert settings.fhir_allowlist == ["https://ehr.example.org/fhir", "http://127.0.0.1:8080/r4"]
