"""Users' recipes in Redis: per owner, one hash per recipe holding its last ``KEEP_VERSIONS``
versions (``v<N>``: the JSON Python wrote, so numbers keep their precision) and ``latest``; a counter
per name that survives deletion (a name saved again goes on from its last version, so a job's
``from_recipe`` version always means one content); a set per owner indexes the names, at most
``MAX_RECIPES``. Async: the API reads them on the submit path. Built-ins are not stored
(darkroom/apps/pipeline/recipes.py)."""

from __future__ import annotations

import json
import logging
import time

import redis.asyncio as aioredis
from pydantic import ValidationError

from darkroom.apps.pipeline.recipes import Recipe, RecipeBody
from storage import keys

log = logging.getLogger(__name__)

KEEP_VERSIONS = 20
MAX_RECIPES = 500

# KEYS: recipe hash, owner's index, version counter; ARGV: name, body JSON with "version": 0 and
# "updated_at": 0 (replaced here), keep, max recipes, now -> the new version, or -1 when the owner
# has max recipes already and this is a new name
_PUT = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return -1
end
local version = redis.call('INCR', KEYS[3])
local body = string.gsub(ARGV[2], '"version": 0, "updated_at": 0', '"version": ' .. version ..
  ', "updated_at": ' .. ARGV[5], 1)
redis.call('HSET', KEYS[1], 'v' .. version, body, 'latest', version)
local old = version - tonumber(ARGV[3])
if old > 0 then redis.call('HDEL', KEYS[1], 'v' .. old) end
redis.call('SADD', KEYS[2], ARGV[1])
return version
"""


class TooManyRecipes(Exception):
    """The owner has MAX_RECIPES recipes already."""


class StaleRecipe(Exception):
    """A stored recipe that no longer validates (a step's rules changed since it was saved)."""


class RecipeStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client
        self._put = client.register_script(_PUT)

    async def put(self, owner: str, name: str, body: RecipeBody) -> Recipe:
        """Save a new version of ``name``; returns it. TooManyRecipes for a new name past the cap."""
        data = json.dumps({"version": 0, "updated_at": 0, "name": name, **body.model_dump(mode="json")})
        keys_ = [keys.recipe(owner, name), keys.recipe_index(owner), keys.recipe_versions(owner, name)]
        version = int(await self._put(keys=keys_, args=[name, data, KEEP_VERSIONS, MAX_RECIPES, time.time()]))
        if version < 0:
            raise TooManyRecipes(f"at most {MAX_RECIPES} recipes per owner; delete some first")
        return await self.get(owner, name, version)  # type: ignore[return-value]

    async def get(self, owner: str, name: str, version: int | None = None) -> Recipe | None:
        """A version (the latest by default); None when there is none. StaleRecipe when it no longer
        validates."""
        key = keys.recipe(owner, name)
        if version is None:
            latest = await self.r.hget(key, "latest")
            if latest is None:
                return None
            version = int(latest)
        raw = await self.r.hget(key, f"v{version}")
        if raw is None:
            return None
        try:  # trusted: a model no longer registered is the submit check's to name (with its pull hint)
            return Recipe.model_validate_json(raw, context={"trusted": True})
        except ValidationError as exc:
            raise StaleRecipe(f"recipe {name!r} v{version} no longer validates ({exc.error_count()} "
                              f"errors, e.g. {exc.errors()[0]['msg']}); save it again") from None

    async def names(self, owner: str) -> list[str]:
        members = await self.r.smembers(keys.recipe_index(owner))
        return sorted(n.decode() if isinstance(n, bytes) else n for n in members)

    async def delete(self, owner: str, name: str) -> bool:
        """Forget every version of ``name``; False if there was none. Its version counter stays."""
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(keys.recipe(owner, name))
            pipe.srem(keys.recipe_index(owner), name)
            deleted, _ = await pipe.execute()
        return bool(deleted)
