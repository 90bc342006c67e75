"""A small real HTTP service for the server-tools tests: path, query, header and body parameters,
a failing route, a slow one, a huge one and redirects, plus its OpenAPI 3.0 spec (``SPEC``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "pets", "version": "1"},
    "servers": [{"url": "http://placeholder/api"}],
    "paths": {
        "/pets/{pet_id}": {
            "parameters": [{"name": "pet_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "operationId": "getPet", "summary": "One pet by id",
                "parameters": [
                    {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "X-Trace", "in": "header", "schema": {"type": "string", "maxLength": 20}},
                ],
                "responses": {"200": {"description": "the pet"}},
            },
        },
        "/pets": {
            "post": {
                "operationId": "addPet", "summary": "Add a pet",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/NewPet"}}}},
                "responses": {"201": {"description": "added"}},
            },
            "get": {
                "operationId": "listPets",
                "parameters": [{"name": "tag", "in": "query", "schema": {"type": "array",
                                                                          "items": {"type": "string"}}}],
                "responses": {"200": {"description": "pets"}},
            },
        },
        "/fail": {"get": {"operationId": "fail", "responses": {"500": {"description": "always"}}}},
        "/slow": {"get": {"operationId": "slow", "responses": {"200": {"description": "after 5 s"}}}},
        "/huge": {"get": {"operationId": "huge", "responses": {"200": {"description": "2 MB"}}}},
        "/away": {"get": {"operationId": "away", "responses": {"302": {"description": "elsewhere"}}}},
        "/home": {"get": {"operationId": "home", "responses": {"302": {"description": "same host"}}}},
        "/secret": {"get": {"operationId": "secret", "responses": {"200": {"description": "needs a key"}}}},
        "/upload": {"post": {"operationId": "upload", "requestBody": {"content": {"image/png": {}}},
                             "responses": {"200": {"description": "never a tool"}}}},
    },
    "components": {"schemas": {
        "NewPet": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 40, "example": "Rex"},
            "tag": {"type": "string", "nullable": True},
            "parent": {"$ref": "#/components/schemas/NewPet"},
        }},
    }},
}


async def get_pet(request: web.Request) -> web.Response:
    raw = request.match_info["pet_id"]
    if not raw.isdigit():
        return web.Response(status=400, text=f"not a pet id: {raw}")
    return web.json_response({"id": int(raw), "name": "Rex",
                              "verbose": request.query.get("verbose"), "trace": request.headers.get("X-Trace")})


async def add_pet(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"added": body}, status=201)


async def list_pets(request: web.Request) -> web.Response:
    return web.json_response({"tags": request.query.getall("tag", [])})


async def fail(request: web.Request) -> web.Response:
    return web.Response(status=500, text="the database is down")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="late")


async def huge(request: web.Request) -> web.Response:
    return web.Response(text="x" * 2_000_000)


async def away(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://example.invalid/steal")


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/api/pets/7")


async def secret(request: web.Request) -> web.Response:
    if request.headers.get("X-Api-Key") != "s3cret":
        return web.Response(status=401, text="no key")
    return web.Response(text="the secret", content_type="text/plain")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/api/pets/{pet_id}", get_pet)
    app.router.add_post("/api/pets", add_pet)
    app.router.add_get("/api/pets", list_pets)
    app.router.add_get("/api/fail", fail)
    app.router.add_get("/api/slow", slow)
    app.router.add_get("/api/huge", huge)
    app.router.add_get("/api/away", away)
    app.router.add_get("/api/home", home)
    app.router.add_get("/api/secret", secret)
    app.router.add_get("/spec.json", spec_json)
    return app


async def spec_json(request: web.Request) -> web.Response:
    """The spec as the service serves it: its server URL relative, so the spec's URL gives the host."""
    return web.json_response({**SPEC, "servers": [{"url": "/api"}]})


@asynccontextmanager
async def running_service() -> AsyncIterator[str]:
    """The service on a free port; yields its base URL (``http://127.0.0.1:PORT``)."""
    app = make_app()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        yield base
    finally:
        await runner.cleanup()
