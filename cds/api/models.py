"""Request models (pydantic) and the JSON body reader shared by the service and feedback endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cds.api.errors import ApiError, Issue, validation_issues
from cds.fhir.decoding import LeanResource, decode_hook_request_within
from cds.fhir.json_limits import raw_limit_violation
from cds.settings import Settings
from cds.store import feedback as feedback_table
from cds.store import text_limit

M = TypeVar("M", bound=BaseModel)

NonEmpty = Annotated[StrictStr, Field(min_length=1)]


def _uuid_text(value: str) -> str:
    text = value.removeprefix("urn:uuid:")
    try:
        uuid.UUID(text)
    except ValueError:
        raise ValueError("must be a UUID") from None
    return value


UuidText = Annotated[StrictStr, AfterValidator(_uuid_text), Field(json_schema_extra={"format": "uuid"})]


class FhirAuthorization(BaseModel):
    """CDS Hooks 2.0 ``fhirAuthorization``. The token is a SecretStr so it never shows in a repr or log."""

    model_config = ConfigDict(extra="allow")

    access_token: SecretStr
    token_type: NonEmpty
    expires_in: Annotated[StrictInt, Field(ge=0)]
    scope: NonEmpty
    subject: NonEmpty

    @field_validator("access_token", mode="before")
    @classmethod
    def _token_is_text(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty string")
        return value

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("must be 'Bearer'")
        return "Bearer"


def _prefetch_value(value: Any) -> Any:
    if value is None or type(value) is dict or type(value) is LeanResource:
        return value
    raise PydanticCustomError("dict_type", "Input should be a valid dictionary")


#: A prefetched resource: a JSON object (a dict, or a LeanResource where the request was decoded lean:
#: cds.fhir.decoding), or null.
PrefetchValue = Annotated[
    Any, PlainValidator(_prefetch_value), WithJsonSchema({"anyOf": [{"type": "object"}, {"type": "null"}]})
]


class HookRequest(BaseModel):
    """The body of ``POST /cds-services/{id}``; ``context`` is validated by the hook's own model."""

    model_config = ConfigDict(extra="allow")

    hook: NonEmpty
    hookInstance: UuidText
    fhirServer: NonEmpty | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, PrefetchValue] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("https://", "http://")):
            raise ValueError("must be an absolute http(s) URL")
        return value

    def conditional_issues(self) -> list[Issue]:
        """The specification's conditional rule: fhirServer is REQUIRED when fhirAuthorization is given."""
        if self.fhirAuthorization is not None and self.fhirServer is None:
            return [Issue("required", "fhirServer is required when fhirAuthorization is present", "fhirServer")]
        return []


# The override reason is stored (cds.store.feedback) within its columns' lengths: the table's definition is the
# one source of each limit, so a value over it is a 400 here on every database, not a DataError (a 500) on
# PostgreSQL or a silently stored 100 KB on SQLite.
StoredSystem = Annotated[StrictStr, Field(min_length=1, max_length=text_limit(feedback_table, "override_system"))]
StoredCode = Annotated[StrictStr, Field(min_length=1, max_length=text_limit(feedback_table, "override_code"))]
StoredDisplay = Annotated[StrictStr, Field(min_length=1, max_length=text_limit(feedback_table, "override_display"))]
#: The card's id as sent: a UUID, possibly as "urn:uuid:…", no longer than the column it is stored in.
CardUuid = Annotated[UuidText, Field(max_length=text_limit(feedback_table, "card_uuid"))]


class Coding(BaseModel):
    """A feedback's override reason; each field is stored (cds.store.feedback), within its column."""

    model_config = ConfigDict(extra="allow")

    system: StoredSystem | None = None
    code: StoredCode | None = None
    display: StoredDisplay | None = None

    @model_validator(mode="after")
    def _has_code(self) -> Coding:
        if self.code is None and self.display is None:
            raise ValueError("a Coding needs a code or a display")
        return self


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")

    reason: Coding | None = None
    userComment: NonEmpty | None = None


class AcceptedSuggestion(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: NonEmpty


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    card: CardUuid
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: Annotated[list[AcceptedSuggestion], Field(min_length=1)] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime

    @field_validator("outcomeTimestamp", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 timestamp string")
        return value

    @field_validator("outcomeTimestamp")
    @classmethod
    def _in_utc_range(cls, value: datetime) -> datetime:
        # Stored in UTC (cds.store.timestamp_key): 0001-01-01T00:00:00+14:00 is a valid ISO 8601 text
        # whose instant lies before the first year a datetime holds.
        try:
            (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range: in UTC it falls outside the years 1 to 9999") from None
        return value

    @model_validator(mode="after")
    def _conditional(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when outcome is 'accepted'")
        if self.outcome == "accepted" and self.overrideReason is not None:
            raise ValueError("overrideReason is only for outcome 'overridden'")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    feedback: Annotated[list[FeedbackItem], Field(min_length=1)]


# ---------------------------------------------------------------------------------------------------
# Reading a JSON body safely.


async def read_body(request: Request, settings: Settings) -> bytes:
    """The body's bytes, within the size limit and not empty; else a 4xx ApiError."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise ApiError.single(413, "too-long", f"Request body exceeds {settings.max_body_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise ApiError.single(413, "too-long", f"Request body exceeds {settings.max_body_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError.single(400, "required", "The request body is empty; a JSON object is required")
    return raw


async def read_json_object(request: Request, settings: Settings) -> dict[str, Any]:
    """The body as a JSON object, within the size, depth and string limits; else a 4xx ApiError."""
    return json_object(await read_body(request, settings), settings)


async def read_hook_request(request: Request, settings: Settings) -> dict[str, Any]:
    """:func:`read_json_object` for a CDS Hooks request, with its prefetched resources decoded lean
    (:mod:`cds.fhir.decoding`): the same checks and the same answers, without building every field of every
    resource in Python."""
    raw = await read_body(request, settings)
    data, problem = decode_hook_request_within(
        raw,
        lambda: _parse(raw, settings),
        max_depth=settings.max_json_depth,
        max_string_length=settings.max_string_length,
    )
    if data is None:  # lean decoding does not settle it: the full parse says what is wrong, if anything
        return json_object(raw, settings)
    if problem is not None:
        raise ApiError.single(400, "too-long", problem)
    return data


def _parse(raw: bytes, settings: Settings) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own nesting limit (1024), far above max_json_depth
            too_deep = f"The JSON nests deeper than {settings.max_json_depth} levels"
            raise ApiError.single(400, "too-long", too_deep) from None
        raise ApiError.single(400, "structure", "The request body is not valid JSON (UTF-8)") from None


def json_object(raw: bytes, settings: Settings) -> dict[str, Any]:
    """``raw`` parsed as a JSON object within the depth and string limits; else a 400 ApiError."""
    data = _parse(raw, settings)
    if not isinstance(data, dict):
        kind = "an array" if isinstance(data, list) else f"a JSON {type(data).__name__}"
        raise ApiError.single(400, "structure", f"The request body must be a JSON object, not {kind}")
    _check_limits(raw, lambda: data, settings)
    return data


def _check_limits(raw: bytes, parsed: Callable[[], Any], settings: Settings) -> None:
    # A string has no more characters than the bytes it is written with: a body no longer than the limit
    # cannot hold a string over it, and the body's text settles the nesting without a walk in Python.
    problem = raw_limit_violation(
        raw, parsed, max_depth=settings.max_json_depth, max_string_length=settings.max_string_length
    )
    if problem is not None:
        raise ApiError.single(400, "too-long", problem)


def parse(model: type[M], data: Any, *, prefix: str = "") -> M:
    """``model`` from ``data``, or a 400 ApiError with one issue per problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = validation_issues(exc.errors(include_input=False), prefix=prefix)
        raise ApiError(400, issues or [Issue("invalid", "The request is not valid")]) from None


async def read_hook_call(
    request: Request, settings: Settings, hook_name: str, context_model: type[M]
) -> tuple[HookRequest, M]:
    """The body of a call of a service of the hook ``hook_name``, checked in full: the request (limits,
    fields, the conditional fhirServer rule), its hook, and its context by the hook's own model; else a
    400 ApiError (413 for a body over the size limit)."""
    hook_request = parse(HookRequest, await read_hook_request(request, settings))
    if issues := hook_request.conditional_issues():
        raise ApiError(400, issues)
    if hook_request.hook != hook_name:
        raise ApiError.single(400, "invalid", f"hook: this service answers the '{hook_name}' hook", "hook")
    return hook_request, parse(context_model, hook_request.context, prefix="context")


# ---------------------------------------------------------------------------------------------------
# OpenAPI: the routes read their bodies themselves (size and depth limits first), so FastAPI cannot see
# the models; ``openapi_body`` describes them for the schema (``openapi_extra`` of the route).


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline_refs(defs[ref.removeprefix("#/$defs/")], defs), **_inline_refs(rest, defs)}
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``{"requestBody": ...}`` for a route's ``openapi_extra``: ``model``'s JSON schema, references
    inlined (the request models are not recursive)."""
    schema = model.model_json_schema(mode="validation")
    inlined = _inline_refs(schema, schema.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inlined}}}}
