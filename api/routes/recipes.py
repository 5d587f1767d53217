"""``/darkroom/recipes``: list, read, save and delete saved pipelines. Each caller sees the built-ins
(read-only) and their own recipes (anonymous callers share one set)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from darkroom.apps.pipeline import check_fonts
from darkroom.apps.pipeline.recipes import BUILTIN_RECIPES, RECIPE_NAME, Recipe, RecipeBody
from darkroom.errors import InvalidInput, NotFound, ReadOnly
from darkroom.models import get_model
from storage.recipes import StaleRecipe, TooManyRecipes

from ..auth import CallerDep
from ..deps import Services, services
from ..recipes import find_recipe, recipe_store

log = logging.getLogger(__name__)
router = APIRouter(prefix="/darkroom/recipes", tags=["recipes"])
SvcDep = Annotated[Services, Depends(services)]
NameParam = Annotated[str, Path(pattern=RECIPE_NAME.pattern, description="Recipe name (a-z, 0-9, -)")]


@router.get("", summary="List the built-in recipes and yours")
async def list_recipes(svc: SvcDep, caller: CallerDep) -> dict[str, Any]:
    store = recipe_store(svc)
    own = []
    for name in await store.names(caller.owner):
        try:
            recipe = await store.get(caller.owner, name)
        except StaleRecipe as exc:  # one stale recipe must not hide the others
            log.warning("%s", exc)
            continue
        if recipe is not None:
            own.append(recipe)
    builtins = [r for r in BUILTIN_RECIPES.values() if _models_present(r, svc)]
    return {"recipes": [r.model_dump(mode="json") for r in [*builtins, *own]]}


def _models_present(recipe: Recipe, svc: Services) -> bool:
    """A built-in that needs models is listed only where they are on disk (`darkroom models pull`)."""
    return all((spec := get_model(n)) is not None and spec.is_present(svc.settings.models_dir)
               for n in recipe.model_names())


@router.get("/{name}", summary="One recipe (its latest version, or ?version=N)")
async def get_recipe(
    name: NameParam, svc: SvcDep, caller: CallerDep,
    version: Annotated[int | None, Query(ge=1, description="An earlier version")] = None,
) -> Recipe:
    return await find_recipe(svc, caller.owner, name, version)


@router.put("/{name}", summary="Save a recipe (every save is a new version)")
async def put_recipe(name: NameParam, body: RecipeBody, svc: SvcDep, caller: CallerDep) -> Recipe:
    if name in BUILTIN_RECIPES:
        raise ReadOnly(f"{name!r} is a built-in recipe and cannot be changed; save yours under another name")
    check_fonts(body.steps, svc.settings.fonts_dir)
    try:
        return await recipe_store(svc).put(caller.owner, name, body)
    except TooManyRecipes as exc:
        raise InvalidInput(str(exc)) from None


@router.delete("/{name}", summary="Delete a recipe and all its versions")
async def delete_recipe(name: NameParam, svc: SvcDep, caller: CallerDep) -> dict[str, str]:
    if name in BUILTIN_RECIPES:
        raise ReadOnly(f"{name!r} is a built-in recipe and cannot be deleted")
    if not await recipe_store(svc).delete(caller.owner, name):
        raise NotFound(f"no recipe {name!r}")
    return {"deleted": name}
