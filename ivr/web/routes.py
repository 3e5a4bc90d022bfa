"""The route table of the JSON API, the one source its OpenAPI document is built from.

Each endpoint is one :class:`Route`: method, path, handler, the role it needs, its query
parameters and the JSON schemas of its body and answer.  The application registers the routes
from the table (:func:`add_routes`), the authorisation middleware reads their role, request
bodies are checked against their schema (:func:`json_body`), and :func:`openapi` turns the same
table into the OpenAPI 3.1 document served at ``/api/v1/openapi.json``: a route cannot be
served without being documented, nor documented without being served.

Errors are :class:`ApiError`: the status and a sentence, answered as ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Access = Literal["public", "user", "admin"]
PATH_PARAM = re.compile(r"\{(\w+)\}")


class ApiError(Exception):
    """A request that cannot be served: ``status`` and a sentence saying why."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra

    def response(self) -> web.Response:
        return web.json_response({"error": str(self), **self.extra}, status=self.status)


@dataclass(frozen=True)
class Param:
    """A query parameter."""

    name: str
    description: str
    type: str = "string"


@dataclass(frozen=True)
class Route:
    """One endpoint of the API; ``access`` is the least role that may call it."""

    method: str
    path: str
    handler: Handler
    summary: str
    access: Access
    tag: str
    body: dict[str, Any] | None = None  # JSON schema of a JSON body
    body_type: str = "application/json"  # or text/plain (a flow's source)
    response: dict[str, Any] | None = None  # JSON schema of the 200 answer
    produces: str = "application/json"
    query: tuple[Param, ...] = ()


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
    app["route_access"] = {(r.method, r.path): r for r in routes}


# ------------------------------------------------------------------ request bodies


async def json_body(request: web.Request, schema: dict[str, Any]) -> Any:
    """The request's JSON body, checked against ``schema``; ApiError 400/415 otherwise."""
    if request.content_type != "application/json":
        raise ApiError(415, f"expected a JSON body (Content-Type: application/json), got {request.content_type!r}")
    raw = await request.read()
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    problem = validate(value, schema, "body")
    if problem:
        raise ApiError(400, problem)
    return value


async def text_body(request: web.Request) -> str:
    """A text/plain body as UTF-8 (a flow's source)."""
    if request.content_type != "text/plain":
        raise ApiError(415, f"expected text/plain, got {request.content_type!r}")
    try:
        return (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text") from None


_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "null": type(None),
}


def validate(value: Any, schema: dict[str, Any], where: str) -> str:
    """The first way ``value`` breaks ``schema`` (a small subset of JSON Schema), "" if none."""
    types = schema.get("type", "object")
    types = types if isinstance(types, list) else [types]
    if not any(_is(value, t) for t in types):
        return f"{where}: expected {' or '.join(types)}"
    if isinstance(value, str) and len(value) > schema.get("maxLength", 10_000):
        return f"{where}: longer than {schema['maxLength']} characters"
    if isinstance(value, str) and "pattern" in schema and not re.fullmatch(schema["pattern"], value):
        return f"{where}: {value!r} does not match {schema['pattern']}"
    if isinstance(value, str) and "enum" in schema and value not in schema["enum"]:
        return f"{where}: expected one of {', '.join(schema['enum'])}"
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", 1000):
            return f"{where}: more than {schema['maxItems']} items"
        return next((p for i, v in enumerate(value) if (p := validate(v, schema["items"], f"{where}[{i}]"))), "")
    if isinstance(value, dict):
        return _validate_object(value, schema, where)
    return ""


def _validate_object(value: dict[str, Any], schema: dict[str, Any], where: str) -> str:
    props = schema.get("properties", {})
    missing = [k for k in schema.get("required", ()) if k not in value]
    if missing:
        return f"{where}: missing {', '.join(missing)}"
    unknown = sorted(set(value) - set(props))
    if unknown:
        return f"{where}: unknown field(s) {', '.join(unknown)}"
    return next((p for k, v in value.items() if (p := validate(v, props[k], f"{where}.{k}"))), "")


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "number":
        return isinstance(value, int | float)
    return isinstance(value, _TYPES[kind])


# ------------------------------------------------------------------ the OpenAPI document

ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def openapi(routes: Sequence[Route], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ivr console API", "version": version,
                 "description": "Calls, journal, switches, flows, voicemail, extensions and forwarding."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "ivr_session",
                            "description": "a console login; state-changing calls also send X-CSRF-Token"},
                "token": {"type": "http", "scheme": "bearer", "description": "an API token (ivr web token USER)"},
            },
            "schemas": {"Error": ERROR},
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": route.handler.__name__,
        "x-role": route.access,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in PATH_PARAM.findall(route.path)
        ] + [
            {"name": p.name, "in": "query", "required": False, "description": p.description,
             "schema": {"type": p.type}}
            for p in route.query
        ],
        "responses": {
            "200": {"description": "OK", "content": {route.produces: {"schema": route.response or {}}}},
            "4XX": {"description": "refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    }
    if route.access != "public":
        op["security"] = [{"session": []}, {"token": []}]
    if route.body is not None or route.body_type != "application/json":
        op["requestBody"] = {"required": True, "content": {route.body_type: {"schema": route.body or {"type": "string"}}}}
    return op
