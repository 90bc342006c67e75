"""A tiny pet shop HTTP service for the server-tools example (docs/server-tools.md, README).

    python docs/examples/server-tools/petstore.py [PORT]     # default 9000

It serves the operations its spec (pets.yaml, beside this file) describes, from memory.
"""

from __future__ import annotations

import sys

from aiohttp import web

PETS = {1: {"id": 1, "name": "Rex", "tag": "dog"}, 2: {"id": 2, "name": "Tom", "tag": "cat"}}


async def get_pet(request: web.Request) -> web.Response:
    pet = PETS.get(int(request.match_info["pet_id"]))
    if pet is None:
        return web.json_response({"error": "no such pet"}, status=404)
    return web.json_response(pet)


async def list_pets(request: web.Request) -> web.Response:
    tag = request.query.get("tag")
    return web.json_response([p for p in PETS.values() if tag is None or p["tag"] == tag])


async def add_pet(request: web.Request) -> web.Response:
    body = await request.json()
    pet = {"id": max(PETS) + 1, "name": body["name"], "tag": body.get("tag")}
    PETS[pet["id"]] = pet
    return web.json_response(pet, status=201)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/pets/{pet_id:-?\\d+}", get_pet)
    app.router.add_get("/pets", list_pets)
    app.router.add_post("/pets", add_pet)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 9000)
