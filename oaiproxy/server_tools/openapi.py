"""An OpenAPI 3.x document as server tools, and the HTTP calls they make.

Each operation becomes a tool whose arguments are one object ``{path, query, header, body}``
(only the groups the operation has), built from its parameters and its JSON request body with
every local ``$ref`` resolved. A recursive ``$ref`` is expanded :data:`MAX_REF_DEPTH` times, then
admits any value; a document beyond :data:`MAX_SPEC_BYTES` or :data:`MAX_NODES` is refused, as is
one that is not OpenAPI 3.x, each with a :class:`SourceError` naming the source. An operation whose
schema the grammar cannot enforce exactly is skipped, and the listing says why.

A call goes only to the source's base URL: the model fills path values (percent-encoded, never a
``/``, ``.`` or ``..`` segment of its own), query, declared headers and the body; redirects are
followed only within the same origin; the timeout and the size limit hold. A non-2xx status is a
tool error the model reads. Configured headers (secrets) are never logged or listed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import yaml
from yarl import URL

from oaiproxy.conversation.checks import check_schema_for
from oaiproxy.conversation.model import ToolSpec
from oaiproxy.errors import BadRequest
from oaiproxy.server_tools.base import ServerTool, SourceError, ToolResult
from oaiproxy.server_tools.config import OpenAPISource, selected

log = logging.getLogger("oaiproxy.server_tools")

#: the largest spec document read (file or URL)
MAX_SPEC_BYTES = 10_000_000
#: schema nodes one source may expand to while its $refs are resolved
MAX_NODES = 200_000
#: how often one $ref may appear on its own expansion path before it admits any value
MAX_REF_DEPTH = 3
#: same-origin redirects followed per call
MAX_REDIRECTS = 5
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
#: schema annotations of OpenAPI that JSON Schema does not know; they change nothing in a call
_ANNOTATIONS = ("example", "xml", "externalDocs", "discriminator", "deprecated", "readOnly", "writeOnly")
#: headers OpenAPI says a parameter may not declare (the proxy sets them)
_RESERVED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_GROUPS = ("path", "query", "header")


@dataclass(frozen=True)
class Operation:
    """One operation, as its calls need it."""

    method: str
    path: str
    #: parameter name -> location, for the groups that have any
    params: dict[str, str]
    has_body: bool


@dataclass
class LoadedSource:
    """A source's tools and what a listing says of it (never a secret)."""

    name: str
    kind: str
    origin: str
    tools: list[ServerTool]
    skipped: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def display_url(url: str) -> str:
    """A URL without its query, user or password: what logs and listings show."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


# ------------------------------------------------------------------ reading the document


async def read_spec(url: str, *, timeout: float, where: str) -> Any:
    """The document at ``url`` (http(s) or a file), parsed as JSON or YAML; errors start with ``where``."""
    if url.startswith(("http://", "https://")):
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                    session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise SourceError(f"{where}: GET answered HTTP {resp.status}")
                raw = await _read_limited(resp, MAX_SPEC_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceError(f"{where}: cannot fetch the spec: {type(exc).__name__} {exc}") from None
        if raw is None:
            raise SourceError(f"{where}: the spec is larger than {MAX_SPEC_BYTES} bytes")
    else:
        path = Path(url)
        try:
            if path.stat().st_size > MAX_SPEC_BYTES:
                raise SourceError(f"{where}: the spec is larger than {MAX_SPEC_BYTES} bytes")
            raw = path.read_bytes()
        except OSError as exc:
            raise SourceError(f"{where}: cannot read the spec: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        return json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SourceError(f"{where}: the spec is not valid JSON or YAML: {exc}") from None
    except RecursionError:
        raise SourceError(f"{where}: the spec nests too deeply") from None


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` bytes (the rest is not read)."""
    out = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        out += chunk
        if len(out) > limit:
            return None
    return bytes(out)


class _Resolver:
    """Local ``$ref`` s expanded in place, bounded in depth and in total size."""

    def __init__(self, doc: dict[str, Any], where: str):
        self.doc = doc
        self.where = where
        self.nodes = 0

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise SourceError(f"{self.where}: only local $refs (#/...) are supported, not {ref!r}")
        node: Any = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SourceError(f"{self.where}: $ref {ref!r} points at nothing")
        return node

    def resolve(self, node: Any, stack: tuple[str, ...] = ()) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SourceError(f"{self.where}: the spec expands to more than {MAX_NODES} schema nodes "
                              "(huge, or recursive $refs)")
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if stack.count(ref) >= MAX_REF_DEPTH:
                    return {}
                target = self.resolve(self.lookup(ref), (*stack, ref))
                rest = {k: self.resolve(v, stack) for k, v in node.items() if k != "$ref"}
                return {**target, **rest} if isinstance(target, dict) else target
            return {k: self.resolve(v, stack) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v, stack) for v in node]
        return node


def json_schema(schema: Any) -> Any:
    """An OpenAPI schema object as JSON Schema: ``nullable`` as a null type, 3.0's boolean
    ``exclusiveMinimum``/``exclusiveMaximum`` as numbers, OpenAPI-only annotations dropped."""
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items() if k not in _ANNOTATIONS and k != "nullable"}
    if schema.get("nullable") is True and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool):
            if out[bound] and limit in out:
                out[bound] = out.pop(limit)
            else:
                del out[bound]
    for key in ("properties", "patternProperties", "$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {name: json_schema(sub) for name, sub in out[key].items()}
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [json_schema(sub) for sub in out[key]]
    for key in ("items", "additionalProperties", "not", "contains", "propertyNames"):
        if isinstance(out.get(key), dict):
            out[key] = json_schema(out[key])
    return out


# ------------------------------------------------------------------ operations as tools


def tool_name(namespace: str, op_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{namespace}_{op_id}")
    return name[:64]


def _op_id(method: str, path: str, op: dict[str, Any]) -> str:
    given = op.get("operationId")
    if isinstance(given, str) and given:
        return given
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", f"{method}_{path}")).strip("_")


def _parameters(path_item: dict[str, Any], op: dict[str, Any], skip_headers: set[str]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for p in [*(path_item.get("parameters") or []), *(op.get("parameters") or [])]:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or p.get("in") not in (*_GROUPS, "cookie"):
            raise ValueError("a parameter without a name or a valid 'in'")
        merged[(p["name"], p["in"])] = p
    out = []
    for (name, where), p in merged.items():
        if where == "cookie":
            if p.get("required"):
                raise ValueError(f"required cookie parameter {name!r} is not supported")
            continue
        if where == "header" and (name.lower() in _RESERVED_HEADERS or name.lower() in skip_headers):
            continue
        out.append(p)
    return out


def _param_schema(p: dict[str, Any]) -> dict[str, Any]:
    schema = p.get("schema")
    if schema is None and isinstance(p.get("content"), dict):
        first: Any = next(iter(p["content"].values()), {})
        schema = first.get("schema") if isinstance(first, dict) else None
    schema = dict(json_schema(schema)) if isinstance(schema, dict) else {}
    if isinstance(p.get("description"), str) and "description" not in schema:
        schema["description"] = p["description"][:500]
    return schema


def _body_schema(op: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    body = op.get("requestBody")
    if not isinstance(body, dict):
        return None, False
    content = body.get("content") or {}
    json_type = next((t for t in content if t == "application/json" or t.endswith("+json")), None)
    if json_type is None:
        raise ValueError(f"request body types {', '.join(content) or '(none)'} are not supported (only JSON)")
    media: dict[str, Any] = content[json_type] if isinstance(content[json_type], dict) else {}
    schema = media.get("schema")
    return (json_schema(schema) if isinstance(schema, dict) else {}), bool(body.get("required"))


def operation_schema(path_item: dict[str, Any], op: dict[str, Any],
                     skip_headers: set[str]) -> tuple[dict[str, Any], dict[str, str], bool]:
    """The tool's parameters, each parameter's location, and whether a body goes with the call."""
    props: dict[str, Any] = {}
    required: list[str] = []
    locations: dict[str, str] = {}
    for group in _GROUPS:
        params = [p for p in _parameters(path_item, op, skip_headers) if p["in"] == group]
        if not params:
            continue
        names = [p["name"] for p in params]
        req = [p["name"] for p in params if group == "path" or p.get("required")]
        props[group] = {"type": "object", "properties": {p["name"]: _param_schema(p) for p in params},
                        "required": req, "additionalProperties": False}
        if req:
            required.append(group)
        locations.update(dict.fromkeys(names, group))
    body, body_required = _body_schema(op)
    if body is not None:
        props["body"] = body
        if body_required:
            required.append("body")
    schema = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return schema, locations, body is not None


def _description(op: dict[str, Any]) -> str:
    parts = [op.get(k) for k in ("summary", "description")]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p)[:1000]


def _base_url(cfg: OpenAPISource, doc: dict[str, Any], where: str) -> str:
    if cfg.base_url:
        return cfg.base_url.rstrip("/")
    servers = doc.get("servers") or []
    server: dict[str, Any] = servers[0] if servers and isinstance(servers[0], dict) else {}
    given = server.get("url")
    url = given if isinstance(given, str) else "/"
    for var, spec in (server.get("variables") or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            url = url.replace("{" + var + "}", str(spec["default"]))
    if not url.startswith(("http://", "https://")):
        if not cfg.url.startswith(("http://", "https://")):
            raise SourceError(f"{where}: the spec's server URL {url!r} is relative and the spec is a file; "
                              "set base_url")
        url = urljoin(cfg.url, url)
    return url.rstrip("/")


async def load_openapi(cfg: OpenAPISource) -> LoadedSource:
    """The source's tools, or a :class:`SourceError` naming it."""
    where = f"source {cfg.namespace!r} ({display_url(cfg.url)})"
    doc = await read_spec(cfg.url, timeout=cfg.timeout, where=where)
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3."):
        found = doc.get("openapi") or doc.get("swagger") if isinstance(doc, dict) else type(doc).__name__
        raise SourceError(f"{where}: not an OpenAPI 3.x document (openapi: {found!r})")
    if not isinstance(doc.get("paths"), dict):
        raise SourceError(f"{where}: the document has no 'paths' object")
    base = _base_url(cfg, doc, where)
    resolver = _Resolver(doc, where)
    skip_headers = {h.lower() for h in cfg.headers}
    tools: list[ServerTool] = []
    skipped: dict[str, str] = {}
    try:
        for path, raw_item in doc["paths"].items():
            item = resolver.resolve(raw_item)
            if not isinstance(item, dict):
                raise SourceError(f"{where}: paths[{path!r}] is not an object")
            for method in METHODS:
                op = item.get(method)
                if not isinstance(op, dict):
                    continue
                op_id = _op_id(method, path, op)
                if not selected(op_id, cfg.include, cfg.exclude):
                    continue
                name = tool_name(cfg.namespace, op_id)
                try:
                    schema, locations, has_body = operation_schema(item, op, skip_headers)
                    check_schema_for(schema, name, f"tool {name!r}")
                except (ValueError, BadRequest) as exc:
                    skipped[op_id] = str(exc.message if isinstance(exc, BadRequest) else exc)
                    log.warning("%s: operation %s skipped: %s", where, op_id, skipped[op_id])
                    continue
                operation = Operation(method=method.upper(), path=path, params=locations, has_body=has_body)
                spec = ToolSpec(name=name, description=_description(op) or f"{method.upper()} {path}",
                                parameters=schema)
                tools.append(ServerTool(spec=spec, source=cfg.namespace, run=_caller(cfg, base, operation)))
    except RecursionError:
        raise SourceError(f"{where}: the spec nests too deeply") from None
    names = [t.spec.name for t in tools]
    if len(set(names)) != len(names):
        raise SourceError(f"{where}: two operations give the same tool name")
    return LoadedSource(name=cfg.namespace, kind="openapi", origin=display_url(cfg.url), tools=tools,
                        skipped=skipped, details={"base_url": display_url(base),
                                                  "headers": {k: v.describe() for k, v in cfg.headers.items()},
                                                  "timeout": cfg.timeout,
                                                  "max_response_bytes": cfg.max_response_bytes})


# ------------------------------------------------------------------ calls


def _query_items(values: dict[str, Any]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            items.append((key, _text(v)))
    return items


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


def build_request(base: str, op: Operation, args: dict[str, Any]) -> tuple[URL, list[tuple[str, str]],
                                                                              dict[str, str]]:
    """The URL (on ``base`` only), the query and the model's headers for one call."""
    path = op.path
    for name, value in (args.get("path") or {}).items():
        text = _text(value)
        if text in ("", ".", ".."):
            raise ValueError(f"path parameter {name!r} may not be {text!r}")
        path = path.replace("{" + name + "}", quote(text, safe=""))
    if re.search(r"\{[^}]*\}", path):
        raise ValueError(f"path parameters missing for {op.path}")
    url = URL(base + path, encoded=True)
    headers = {name: _text(v) for name, v in (args.get("header") or {}).items()}
    return url, _query_items(args.get("query") or {}), headers


def _result_text(body: bytes, content_type: str, charset: str | None) -> str:
    textual = content_type.startswith("text/") or "json" in content_type or "xml" in content_type \
        or "javascript" in content_type or not content_type
    if not textual:
        return f"(a {content_type} response of {len(body)} bytes, not shown to the model)"
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _caller(cfg: OpenAPISource, base: str, op: Operation) -> Any:
    base_url = URL(base)
    label = f"{cfg.namespace}: {op.method} {op.path}"

    async def run(args: dict[str, Any]) -> ToolResult:
        try:
            url, query, headers = build_request(base, op, args)
            for name, value in cfg.headers.items():
                headers[name] = value.resolve(name)
        except (ValueError, KeyError) as exc:
            return ToolResult(f"cannot call {label}: {exc.args[0] if exc.args else exc}", is_error=True)
        body = json.dumps(args["body"], ensure_ascii=False).encode() if op.has_body and "body" in args else None
        if body is not None:
            headers["Content-Type"] = "application/json"
        method = op.method
        try:
            async with asyncio.timeout(cfg.timeout), aiohttp.ClientSession() as session:
                for _ in range(MAX_REDIRECTS + 1):
                    async with session.request(method, url, params=query or None, headers=headers, data=body,
                                               allow_redirects=False) as resp:
                        if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                            target = url.join(URL(resp.headers["Location"]))
                            if _origin(target) != _origin(base_url):
                                return ToolResult(f"{label}: HTTP {resp.status} redirect to another host "
                                                  f"({target.host}) not followed", is_error=True)
                            url, query = target, []
                            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                                method, body = "GET", None
                                headers.pop("Content-Type", None)
                            continue
                        raw = await _read_limited(resp, cfg.max_response_bytes)
                        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                        if raw is None:
                            return ToolResult(f"{label}: the response is larger than {cfg.max_response_bytes} "
                                              "bytes (max_response_bytes)", is_error=True)
                        text = _result_text(raw, ctype, resp.charset)
                        log.info("server tool %s: HTTP %d, %d bytes", label, resp.status, len(raw))
                        if not 200 <= resp.status < 300:
                            return ToolResult(f"HTTP {resp.status} {resp.reason or ''}: {text}".strip(),
                                              ctype or "text/plain", is_error=True)
                        return ToolResult(text, ctype or "text/plain")
                return ToolResult(f"{label}: more than {MAX_REDIRECTS} redirects", is_error=True)
        except TimeoutError:
            return ToolResult(f"{label}: no answer within {cfg.timeout:g} s (timeout)", is_error=True)
        except aiohttp.ClientError as exc:
            return ToolResult(f"{label}: cannot reach {display_url(base)}: {type(exc).__name__}", is_error=True)

    return run


__all__ = ["LoadedSource", "Operation", "build_request", "json_schema", "load_openapi", "read_spec", "tool_name"]
