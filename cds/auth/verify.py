"""Verification of a CDS Hooks 2.0 client JWT ("Trusting CDS Clients"), done by joserfc.

Order of checks (each failure raises ``AuthError`` with a reason for the log):

1. The compact JWS is split by joserfc (no trust yet); header ``alg`` must be an asymmetric algorithm
   in ``ALLOWED_ALGORITHMS`` (never ``none`` or HMAC), ``typ`` must be ``JWT``, ``kid`` is required.
2. The not-yet-verified ``iss`` chooses the client; an ``iss`` not in the clients file is rejected.
3. Keys: a header ``jku`` must be on that client's allow-list (otherwise rejected, before any request
   is made to it). A client with a pinned key set (inline ``jwks`` or ``jwks_url``) is verified against
   that set: its ``jku`` is checked, never fetched. Otherwise the ``jku`` is fetched.
4. joserfc verifies the signature with the key of that ``kid`` (re-fetching the set once if the kid
   is unknown), with a registry that allows only ``ALLOWED_ALGORITHMS``.
5. joserfc's ``JWTClaimsRegistry`` checks the claims of the verified payload: ``iss`` (same client),
   ``aud`` (one of the accepted audiences), ``exp`` and ``iat`` required, with leeway (``iat`` not in
   the future), ``nbf`` if present, ``jti`` required; then the client's tenant allow-list.
6. The ``(iss, jti)`` pair is recorded in the database; a pair already there is a replay.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jws import JWSRegistry
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy.exc import SQLAlchemyError

from cds.auth.clients import ClientRegistry
from cds.auth.errors import AuthError, short
from cds.auth.jwks import JWKSCache, JWKSError
from cds.auth.replay import MAX_JTI_LENGTH, ReplayStore

#: Asymmetric JWS algorithms accepted (CDS Hooks: no "none", no symmetric algorithm; ES384 and RS384
#: are the recommended ones).
ALLOWED_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)

#: Longest token accepted (joserfc's own size limits also apply).
MAX_TOKEN_LENGTH = 8192

# Only these algorithms; header members outside the JWS registry are ignored unless listed in "crit".
_JWS_REGISTRY = JWSRegistry(algorithms=ALLOWED_ALGORITHMS, strict_check_header=False)

_MAX_STORED_EXPIRY = 2**62


@dataclass(frozen=True, slots=True)
class VerifiedClient:
    """The CDS client a request came from, after its JWT was verified."""

    iss: str
    sub: str | None
    tenant: str | None
    jti: str


async def verify_token(
    token: str,
    *,
    clients: ClientRegistry,
    jwks: JWKSCache,
    replay: ReplayStore,
    audiences: Collection[str],
    leeway: int,
    now: Callable[[], int] | None = None,
) -> VerifiedClient:
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise AuthError("malformed_token")
    try:
        compact = jws.extract_compact(token.encode("ascii"), registry=_JWS_REGISTRY)
        header = compact.headers()
    except (JoseError, ValueError, TypeError) as error:
        raise AuthError("malformed_token") from error

    alg = header.get("alg")
    kid = header.get("kid")
    if alg not in ALLOWED_ALGORITHMS:
        raise AuthError("alg_not_allowed", alg=alg, kid=kid)
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.upper() != "JWT":
        raise AuthError("typ_not_jwt", alg=alg, kid=kid)
    if not isinstance(kid, str) or not kid:
        raise AuthError("missing_kid", alg=alg)

    unverified_iss = _unverified_iss(compact.payload)
    client = clients.get(unverified_iss) if unverified_iss is not None else None
    if client is None:
        raise AuthError("unknown_iss", iss=unverified_iss, kid=kid, alg=alg)
    iss = client.iss

    jku = header.get("jku")
    if jku is not None and (not isinstance(jku, str) or not client.jku_allowed(jku)):
        raise AuthError("jku_not_allowed", iss=iss, kid=kid, alg=alg)
    inline = client.inline_keys
    if inline is not None:
        key_set = inline
    else:
        # Pinned at jwks_url: the jku was checked above and is not fetched ("checked, not fetched").
        key_url = client.jwks_url if client.jwks_url is not None else jku
        if key_url is None:
            raise AuthError("jku_required", iss=iss, kid=kid, alg=alg)
        try:
            key_set = await jwks.key_set_for(key_url, kid)
        except JWKSError as error:
            raise AuthError("jwks_unavailable", iss=iss, kid=kid, alg=alg) from error
    if not any(key.kid == kid for key in key_set):
        raise AuthError("unknown_kid", iss=iss, kid=kid, alg=alg)

    try:
        verified = jwt.decode(token, key_set, registry=_JWS_REGISTRY)
    except BadSignatureError as error:
        raise AuthError("bad_signature", iss=iss, kid=kid, alg=alg) from error
    except InvalidKeyIdError as error:  # the kid exists but its key is for another alg or use
        raise AuthError("key_alg_mismatch", iss=iss, kid=kid, alg=alg) from error
    except (JoseError, ValueError, TypeError) as error:
        raise AuthError("invalid_token", iss=iss, kid=kid, alg=alg) from error

    claims = verified.claims
    requests = JWTClaimsRegistry(
        now=now,
        leeway=leeway,
        iss={"essential": True, "value": iss},
        aud={"essential": True, "values": sorted(audiences)},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    )
    try:
        requests.validate(claims)
    except ExpiredTokenError as error:
        raise AuthError("expired", iss=iss, kid=kid, alg=alg) from error
    except MissingClaimError as error:
        raise AuthError(f"missing_claim_{error.claim}", iss=iss, kid=kid, alg=alg) from error
    except InvalidClaimError as error:
        raise AuthError(f"invalid_claim_{error.claim}", iss=iss, kid=kid, alg=alg) from error
    except JoseError as error:
        raise AuthError("invalid_claims", iss=iss, kid=kid, alg=alg) from error

    jti: str = claims["jti"]
    if len(jti) > MAX_JTI_LENGTH:
        raise AuthError("jti_too_long", iss=iss, kid=kid, alg=alg)
    tenant = claims.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise AuthError("invalid_claim_tenant", iss=iss, kid=kid, alg=alg, jti=jti)
    if client.tenants is not None and tenant not in client.tenants:
        raise AuthError("tenant_not_allowed", iss=iss, kid=kid, alg=alg, jti=jti)
    sub = claims.get("sub")  # type-checked by the claims registry when present

    expires_at = min(math.ceil(claims["exp"]) + max(leeway, 0), _MAX_STORED_EXPIRY)
    try:
        first = await replay.first_use(iss, jti, expires_at)
    except SQLAlchemyError as error:
        raise AuthError("replay_store_unavailable", iss=iss, kid=kid, alg=alg, jti=jti) from error
    if not first:
        raise AuthError("replayed_jti", iss=iss, kid=kid, alg=alg, jti=jti)

    return VerifiedClient(iss=iss, sub=sub, tenant=tenant, jti=jti)


def _unverified_iss(payload: bytes | None) -> str | None:
    """The ``iss`` of a payload not yet verified: used only to choose which keys to verify with."""
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    iss = data.get("iss") if isinstance(data, dict) else None
    return iss if isinstance(iss, str) else None


#: At most this many ``aud`` values of a rejected token are logged.
_MAX_LOGGED_AUDIENCES = 5


def received_fields(token: str) -> dict[str, str | list[str]]:
    """The non-secret ``iss``, ``aud``, ``jku``, ``kid`` and ``alg`` a token *claims*, unverified, for the log
    line of a rejection: what a person needs to see why an EHR's token does not match the configuration.

    Decoded here without trusting anything: a token that is too long, not three parts, not base64url or
    not JSON gives what could be read (possibly nothing). Values are shortened and made printable; the
    token and its signature are never returned."""
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return {}
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    header, payload = _b64_json(parts[0]), _b64_json(parts[1])
    fields: dict[str, str | list[str]] = {}
    for name, source in (("iss", payload), ("jku", header), ("kid", header), ("alg", header)):
        value = source.get(name)
        if isinstance(value, str):
            fields[name] = short(value)
    aud = payload.get("aud")
    if isinstance(aud, str):
        fields["aud"] = short(aud)
    elif isinstance(aud, list):
        fields["aud"] = [short(a) for a in aud[:_MAX_LOGGED_AUDIENCES] if isinstance(a, str)]
    return fields


def _b64_json(segment: str) -> dict[str, object]:
    try:
        data = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
