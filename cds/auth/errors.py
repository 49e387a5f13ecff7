"""The one error of the auth package: a 401 that tells the caller nothing about why."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

#: The challenge sent with every 401 (RFC 6750 section 3, with no error detail on purpose).
WWW_AUTHENTICATE = {"WWW-Authenticate": "Bearer"}

#: The body of every 401: the same OperationOutcome whatever the reason, so that it helps a person
#: configuring an EHR (what is expected) and never a forger (what was wrong).
UNAUTHORIZED_OUTCOME: dict[str, Any] = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "login",
            "diagnostics": "This CDS service needs a valid CDS Hooks client JWT (Authorization: Bearer); "
            "the reason for the refusal is in the service's log",
        }
    ],
}


class AuthError(HTTPException):
    """A CDS client was not authenticated.

    It is an ``HTTPException`` (status 401, ``WWW-Authenticate: Bearer``) so that FastAPI answers
    it even when no handler is registered; ``cds.auth.auth_exception_handler`` makes the body
    ``UNAUTHORIZED_OUTCOME``.
    ``reason``, ``iss``, ``kid`` and the rest are for the server log only and never reach the caller.
    """

    def __init__(
        self,
        reason: str,
        *,
        iss: object = None,
        kid: object = None,
        alg: object = None,
        jti: object = None,
    ) -> None:
        super().__init__(status_code=401, headers=dict(WWW_AUTHENTICATE))
        self.reason = reason
        self.iss = iss
        self.kid = kid
        self.alg = alg
        self.jti = jti

    def log_fields(self) -> dict[str, str]:
        """What may be logged: the reason and short, printable forms of the untrusted header values."""
        fields = {"reason": self.reason}
        for name in ("iss", "kid", "alg", "jti"):
            value = getattr(self, name)
            if isinstance(value, str):
                fields[name] = short(value)
        return fields

    def __repr__(self) -> str:
        return f"AuthError(reason={self.reason!r})"

    __str__ = __repr__


def short(value: str, limit: int = 200) -> str:
    """``value`` cut to ``limit`` characters, non-printable characters replaced: safe for one log line."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[:limit])
    return cleaned + ("…" if len(value) > limit else "")
