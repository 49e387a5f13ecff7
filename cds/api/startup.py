"""What the service checks and says when it starts: configurations that cannot work are refused with the
setting to change, and one plain summary tells the person starting it what it will do."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import IO, Any

from cds.settings import Settings, SettingsError

_CLIENTS_HELP = "see docs/security.md, 'Clients file'"


def check_cors(settings: Settings) -> None:
    """``*`` lets any web page call the service with a user's browser: only demo mode may do that."""
    if "*" in settings.cors_origins and not settings.demo:
        raise SettingsError(
            "TRIAL_CDS_CORS_ORIGINS=* lets any web page call this service; outside demo mode list the "
            "origins of the browser-based CDS clients instead (scheme://host[:port], comma-separated), "
            "or leave it empty"
        )


def check_can_serve(settings: Settings) -> int | None:
    """Refuses (``SettingsError``) a configuration under which ``trial-cds serve`` would answer every call
    401; returns the number of trusted clients (``None`` when authentication is off)."""
    check_cors(settings)
    if settings.demo or settings.auth == "none":
        return None
    if settings.clients_file is None:
        raise SettingsError(
            "TRIAL_CDS_CLIENTS_FILE is not set, so no CDS client (EHR) is trusted and every call would be "
            f"refused: set it to the clients file ({_CLIENTS_HELP}); for development only, set "
            "TRIAL_CDS_AUTH=none to turn client authentication off"
        )
    from cds.auth.clients import ClientsFileError, load_clients

    try:
        return len(load_clients(settings.clients_file))
    except ClientsFileError as exc:
        raise SettingsError(f"TRIAL_CDS_CLIENTS_FILE: {exc} ({_CLIENTS_HELP})") from None


def count_clients(settings: Settings) -> int | str | None:
    """The number of trusted clients for the start-up lines, or why there is none; ``None`` without auth."""
    if settings.auth == "none":
        return None
    if settings.clients_file is None:
        return "no clients file"
    from cds.auth.clients import ClientsFileError, load_clients

    try:
        return len(load_clients(settings.clients_file))
    except ClientsFileError:
        return "clients file invalid"


def startup_facts(settings: Settings, trials: Mapping[str, Any], build: str) -> dict[str, Any]:
    """What the start-up log line and the summary both say (no secret: the database URL is left out)."""
    return {
        "auth": settings.auth,
        "demo": settings.demo,
        "audience": settings.audience,
        "clients": count_clients(settings),
        "fhir_allowlist": list(settings.fhir_allowlist),
        "cors_origins": list(settings.cors_origins),
        "public_base_url": settings.public_base_url,
        "max_header_bytes": settings.max_header_bytes,
        "build": build,
        "trials": sorted(trials),
    }


def startup_summary(facts: Mapping[str, Any]) -> str:
    """The start-up facts for a person, in plain text."""
    if facts["auth"] == "none":
        auth = "OFF (any caller is served; development and demo only)"
    else:
        clients = facts["clients"]
        auth = f"CDS Hooks JWT, {clients} trusted client(s)" if isinstance(clients, int) else f"JWT, {clients}"
    audience = facts["audience"] or "not set: derived from each request (set TRIAL_CDS_AUDIENCE)"
    links = facts["public_base_url"] or "not set: follow the request's Host header (set TRIAL_CDS_PUBLIC_BASE_URL)"
    lines = [
        "trial-cds" + (" (DEMO MODE)" if facts["demo"] else ""),
        f"  authentication:  {auth}",
        f"  audience (aud):  {audience}",
        f"  FHIR servers:    {', '.join(facts['fhir_allowlist']) or 'none (prefetch only)'}",
        f"  CORS origins:    {', '.join(facts['cors_origins']) or 'none'}",
        f"  card links:      {links}",
        f"  trials:          {', '.join(facts['trials']) or 'none'}",
        f"  build:           {facts['build']}",
    ]
    return "\n".join(lines)


def print_summary(facts: Mapping[str, Any], stream: IO[str] | None = None) -> None:
    print(startup_summary(facts), file=stream or sys.stderr, flush=True)
