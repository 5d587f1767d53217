"""Users' recipes in Redis: per owner, one hash per recipe holding every version (``v1``, ``v2``…)
and ``latest``; a set per owner indexes the names. Async: the API reads them on the submit path.
Built-ins are not stored (darkroom/apps/pipeline/recipes.py)."""

from __future__ import annotations

import json
import time

import redis.asyncio as aioredis

from darkroom.apps.pipeline.recipes import Recipe, RecipeBody
from storage import keys

# KEYS: recipe hash, owner's index; ARGV: name, body JSON (without version), now -> the new version
_PUT = """
local version = redis.call('HINCRBY', KEYS[1], 'latest', 1)
local body = cjson.decode(ARGV[2])
body['version'] = version
body['updated_at'] = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'v' .. version, cjson.encode(body))
redis.call('SADD', KEYS[2], ARGV[1])
return version
"""


class RecipeStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client
        self._put = client.register_script(_PUT)

    async def put(self, owner: str, name: str, body: RecipeBody) -> Recipe:
        """Save a new version of ``name``; returns it."""
        data = {"name": name, **body.model_dump(mode="json")}
        keys_ = [keys.recipe(owner, name), keys.recipe_index(owner)]
        version = await self._put(keys=keys_, args=[name, json.dumps(data), time.time()])
        return await self.get(owner, name, int(version))  # type: ignore[return-value]

    async def get(self, owner: str, name: str, version: int | None = None) -> Recipe | None:
        key = keys.recipe(owner, name)
        if version is None:
            latest = await self.r.hget(key, "latest")
            if latest is None:
                return None
            version = int(latest)
        raw = await self.r.hget(key, f"v{version}")
        return None if raw is None else Recipe.model_validate_json(raw)

    async def names(self, owner: str) -> list[str]:
        members = await self.r.smembers(keys.recipe_index(owner))
        return sorted(n.decode() if isinstance(n, bytes) else n for n in members)

    async def delete(self, owner: str, name: str) -> bool:
        """Forget every version of ``name``; False if there was none."""
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(keys.recipe(owner, name))
            pipe.srem(keys.recipe_index(owner), name)
            deleted, _ = await pipe.execute()
        return bool(deleted)
