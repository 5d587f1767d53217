"""Recipes on the submit path: a pipeline request naming a recipe becomes the recipe's steps (with
the request's overrides), validated like any pipeline, and remembers the recipe's name and version."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from darkroom.apps.pipeline import PipelineInput
from darkroom.apps.pipeline.recipes import BUILTIN_RECIPES, Recipe, expand
from darkroom.errors import InvalidInput, NotFound
from storage.recipes import KEEP_VERSIONS, RecipeStore, StaleRecipe

from .deps import Services


def recipe_store(svc: Services) -> RecipeStore:
    return RecipeStore(svc.store.ar)


async def find_recipe(svc: Services, owner: str, name: str, version: int | None = None) -> Recipe:
    """A built-in or the owner's recipe; NotFound otherwise."""
    builtin = BUILTIN_RECIPES.get(name)
    if builtin is not None:
        if version not in (None, builtin.version):
            raise NotFound(f"built-in recipe {name!r} has only version {builtin.version}")
        return builtin
    try:
        recipe = await recipe_store(svc).get(owner, name, version)
    except StaleRecipe as exc:
        raise InvalidInput(str(exc)) from None
    if recipe is None:
        if version:
            raise NotFound(f"no version {version} of recipe {name!r} (the last {KEEP_VERSIONS} are kept)")
        raise NotFound(f"no recipe {name!r}; list the recipes with GET /darkroom/recipes")
    return recipe


async def expand_recipe(svc: Services, body: PipelineInput, owner: str) -> PipelineInput:
    """``body`` with its recipe expanded into steps (and the recipe's output block unless the request
    gives one)."""
    if body.recipe is None:
        return body
    try:
        recipe = await find_recipe(svc, owner, body.recipe)
    except NotFound as exc:
        raise InvalidInput(f"recipe: {exc.detail}") from None
    try:
        steps = expand(recipe, body.overrides)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    data = body.model_dump(mode="json", exclude={"recipe", "overrides", "steps", "from_recipe"})
    data["steps"] = steps
    if "output" not in body.model_fields_set:
        data["output"] = recipe.output.model_dump(mode="json")
    try:
        expanded = PipelineInput.model_validate(data)
    except ValidationError as exc:  # an override made a step invalid: a 422 naming the step and field
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    return expanded.model_copy(update={"from_recipe": {"name": recipe.name, "version": recipe.version}})
