"""Which apps a server has and which input fields each takes, so arguments are checked before they go.

The API ignores fields an app does not have (as fal does), so a misspelt ``enable_grian`` would run
and change nothing. The client checks names instead:

- Darkroom's own apps (``darkroom.apps``: post-processing and its single effects, upscale, refine)
  are known here, so they are checked without a network call.
- Other apps (plugins on the server, apps newer than this client) are looked up in the server's
  ``/openapi.json``, fetched once per client, and only when such an app is used. A server without
  that document (another fal-compatible service) leaves them unchecked.

``strict=False`` on the client (``--no-check`` on the command line) sends names as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from darkroom.apps import APPS
from darkroom.client.errors import UnknownApp, UnknownParameter

OWN_APPS = "Darkroom's own apps are"
SERVED_APPS = "This server's apps are"


@dataclass(frozen=True)
class Catalog:
    """A server's apps (from its OpenAPI document): app id -> input field names (None: not described)."""

    apps: dict[str, tuple[str, ...] | None]

    @classmethod
    def from_answer(cls, resp: httpx.Response) -> Catalog | None:
        """The catalog in an answer to ``GET /openapi.json``; None when it holds none."""
        if not resp.is_success:
            return None
        try:
            doc = resp.json()
        except ValueError:
            return None
        return cls.from_openapi(doc) if isinstance(doc, dict) else None

    @classmethod
    def from_openapi(cls, doc: dict[str, Any]) -> Catalog | None:
        """Submit routes: a POST with a JSON body at ``/<app id>``, tagged with the app's base id."""
        apps: dict[str, tuple[str, ...] | None] = {}
        for path, item in (doc.get("paths") or {}).items():
            op = item.get("post") if isinstance(item, dict) else None
            app, tag = path.strip("/"), ((op or {}).get("tags") or ["run"])[0]
            schema = _json_body(op)
            if schema is None or tag == "run" or not (app == tag or app.startswith(f"{tag}/")):
                continue
            apps[app] = _fields(doc, schema)
        return cls(apps) if apps else None


def _json_body(op: dict[str, Any] | None) -> dict[str, Any] | None:
    content = ((op or {}).get("requestBody") or {}).get("content") or {}
    return (content.get("application/json") or {}).get("schema")


def _fields(doc: dict[str, Any], schema: dict[str, Any]) -> tuple[str, ...] | None:
    """The property names of a body schema ($ref and single allOf followed); None if it has none."""
    for _ in range(10):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = (doc.get("components") or {}).get("schemas", {}).get(name) or {}
        elif len(schema.get("allOf") or []) == 1:
            schema = schema["allOf"][0]
        else:
            break
    props = schema.get("properties")
    return tuple(props) if isinstance(props, dict) and props else None


def own_fields(app: str) -> tuple[str, ...] | None:
    """The input fields of one of Darkroom's own apps; None for an app this client does not know."""
    spec = APPS.get(app.strip("/"))
    return tuple(spec.input_model.model_fields) if spec else None


def own_apps() -> list[str]:
    return sorted(APPS)


def check(app: str, arguments: dict[str, Any] | None, catalog: Catalog | None, server: str) -> None:
    """UnknownApp if ``catalog`` lacks the app; UnknownParameter for names the app does not have.
    Apps neither known here nor described by ``catalog`` pass unchecked."""
    fields = own_fields(app)
    if fields is None and catalog is not None:
        if app.strip("/") not in catalog.apps:
            raise UnknownApp(app, server, sorted(catalog.apps), SERVED_APPS)
        fields = catalog.apps[app.strip("/")]
    if fields is None or not arguments:
        return
    unknown = [name for name in arguments if name not in fields]
    if unknown:
        raise UnknownParameter(app.strip("/"), unknown, list(fields))


def is_unknown_route(resp: httpx.Response) -> bool:
    """FastAPI's answer for a path no route serves (as opposed to Darkroom's own 404s, which carry an
    ``error_type`` or a ``status``)."""
    if resp.status_code != 404:
        return False
    try:
        return resp.json() == {"detail": "Not Found"}
    except ValueError:
        return False


def unknown_app(app: str, server: str, catalog: Catalog | None, status_code: int | None) -> UnknownApp:
    if catalog is not None:
        return UnknownApp(app, server, sorted(catalog.apps), SERVED_APPS, status_code)
    return UnknownApp(app, server, own_apps(), OWN_APPS, status_code)
