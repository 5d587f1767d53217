"""Properties every registered effect must have, over its whole parameter space.

The registry contract (worker/effects/registry.py, decisions.md §3 and §5): an effect maps a
``(B, 3, H, W)`` float32 batch in [0, 1] to the same shape, dtype and device, finite and in [0, 1],
on any image size (non-square, 1 pixel wide or high); an item's output never depends on its
batch-mates; randomness comes only from the per-item seeded generators. The tests iterate over every
effect of the schema; an effect not registered yet is skipped, so new effects are covered as they land.
"""

from __future__ import annotations

import os
from typing import Literal, get_args, get_origin

import annotated_types as at
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic.fields import FieldInfo

from darkroom.apps.params import EFFECT_ORDER, EffectParams
from worker.effects import load_all
from worker.effects.chain import make_generators
from worker.effects.registry import EFFECTS, Effect, apply

settings.register_profile(
    "darkroom-effects",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("darkroom-effects")
MAX_SIDE = 12


def registered(name: str) -> Effect:
    load_all()
    if name not in EFFECTS:
        pytest.skip(f"effect {name!r} is not registered yet")
    return EFFECTS[name]


# ---- strategies built from the pydantic parameter models ------------------------------------------


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in info.metadata:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, (at.Gt, at.Lt)):
            raise NotImplementedError(f"strict bound {m!r}: extend the strategy builder")
    return lo, hi


def field_strategy(info: FieldInfo) -> st.SearchStrategy:
    """Every value the field accepts: Literal members, or the closed numeric range of ge/le."""
    ann = info.annotation
    if get_origin(ann) is Literal:
        return st.sampled_from(get_args(ann))
    if ann is bool:
        return st.booleans()
    if ann is str:
        return st.just(info.default)  # URLs: fetched outside the effect
    lo, hi = _bounds(info)
    if ann is int:
        return st.integers(min_value=lo, max_value=hi)
    if ann is float:
        return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)
    raise NotImplementedError(f"no strategy for {ann!r}")


def params_strategy(model: type[EffectParams]) -> st.SearchStrategy:
    fields = {name: field_strategy(info) for name, info in model.model_fields.items()}
    return st.fixed_dictionaries(fields).map(lambda kw: model(**kw))


def draw_items(data: st.DataObject, effect: Effect, n: int) -> list[EffectParams]:
    """``n`` independently drawn items that share the effect's key fields (as a batch must)."""
    items = [data.draw(params_strategy(effect.params), label="item 0")]
    shared = {k: getattr(items[0], k) for k in effect.key_fields}
    for i in range(1, n):
        other = data.draw(params_strategy(effect.params), label=f"item {i}")
        items.append(other.model_copy(update=shared))
    return items


def make_image(seed: int, b: int, h: int, w: int, kind: str = "uniform") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h, w, generator=g)
    if kind == "binary":  # only 0 and 1: the edges of the domain
        return (x > 0.5).float()
    if kind == "flat":  # one colour per item
        return x[..., :1, :1].expand(b, 3, h, w).contiguous()
    if kind == "u8":
        return (x * 255).round() / 255
    return x


@st.composite
def images(draw: st.DrawFn, b: int) -> torch.Tensor:
    h = draw(st.integers(1, MAX_SIDE), label="H")
    w = draw(st.integers(1, MAX_SIDE), label="W")
    kind = draw(st.sampled_from(["uniform", "binary", "flat", "u8"]), label="kind")
    return make_image(draw(st.integers(0, 2**31 - 1), label="seed"), b, h, w, kind)


def run_effect(effect: Effect, x: torch.Tensor, items, seeds=None, extra=None) -> torch.Tensor:
    """Apply like the pipeline: per-item generators for rng effects, extra images for those that need them."""
    gens = ()
    if effect.needs_rng:
        gens = make_generators(seeds if seeds is not None else range(len(items)), x.device)
    if extra is None:
        extra = {k: make_image(99, *x.shape[:1], *x.shape[2:]) for k in effect.extra_images}
    return apply(effect.name, x, items, gens, extra)


def assert_contract(x: torch.Tensor, out: torch.Tensor) -> None:
    assert out.shape == x.shape
    assert out.dtype == x.dtype == torch.float32
    assert out.device == x.device
    assert torch.isfinite(out).all(), "non-finite output"
    assert out.min() >= 0 and out.max() <= 1, f"output outside [0, 1]: {out.min()}..{out.max()}"


# ---- the properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EFFECT_ORDER)
def test_output_finite_in_range_same_shape_over_parameter_space(name: str) -> None:
    effect = registered(name)

    @PROFILE
    @given(data=st.data(), b=st.integers(1, 2))
    def check(data: st.DataObject, b: int) -> None:
        x = data.draw(images(b), label="image")
        before = x.clone()
        items = draw_items(data, effect, b)
        out = run_effect(effect, x, items)
        assert_contract(x, out)
        assert torch.equal(x, before), "the effect modified its input in place"

    check()


@pytest.mark.parametrize("name", EFFECT_ORDER)
def test_batch_equals_items_run_alone(name: str) -> None:
    effect = registered(name)

    @PROFILE
    @given(data=st.data(), seed=st.integers(0, 2**31 - 1))
    def check(data: st.DataObject, seed: int) -> None:
        x = data.draw(images(3), label="image")
        items = draw_items(data, effect, 3)
        seeds = [seed, seed + 1, seed + 2]
        extra = {k: make_image(seed + 7, *x.shape[:1], *x.shape[2:]) for k in effect.extra_images}
        batched = run_effect(effect, x, items, seeds, extra)
        for i in range(3):
            alone_extra = {k: v[i : i + 1] for k, v in extra.items()}
            alone = run_effect(effect, x[i : i + 1], items[i : i + 1], seeds[i : i + 1], alone_extra)
            torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-6, rtol=0)

    check()


def corner_params(model: type[EffectParams]) -> list[EffectParams]:
    """Defaults, plus sets with every number at its minimum or maximum that together visit every
    member of every Literal field."""
    infos = model.model_fields
    literals = [i.annotation for i in infos.values() if get_origin(i.annotation) is Literal]
    literal_sizes = [len(get_args(a)) for a in literals]
    sets = [model()]
    for j in range(max([2, *literal_sizes])):
        kw = {}
        for name, info in infos.items():
            if get_origin(info.annotation) is Literal:
                members = get_args(info.annotation)
                kw[name] = members[j % len(members)]
            elif info.annotation in (int, float):
                kw[name] = _bounds(info)[j % 2]
        sets.append(model(**kw))
    return sets


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 13), (13, 2), (5, 16)])
@pytest.mark.parametrize("name", EFFECT_ORDER)
def test_thin_and_non_square_images(name: str, shape: tuple[int, int]) -> None:
    effect = registered(name)
    x = make_image(3, 1, *shape)
    for params in corner_params(effect.params):
        out = run_effect(effect, x, [params])
        assert_contract(x, out)


@pytest.mark.parametrize("name", EFFECT_ORDER)
def test_reproducible(name: str) -> None:
    """rng effects: same seed → same output, other seed → other output. Others: deterministic and
    independent of the generators."""
    effect = registered(name)
    x = make_image(5, 2, 16, 16)
    items = [effect.params()] * 2
    first = run_effect(effect, x, items, seeds=[11, 12])
    assert torch.equal(first, run_effect(effect, x, items, seeds=[11, 12]))
    if effect.needs_rng:
        other = run_effect(effect, x, items, seeds=[13, 14])
        assert not torch.equal(first[0], other[0]), "a different seed gave the same output"
        assert not torch.equal(first[0], first[1]), "two seeds in one batch gave the same output"
    else:
        gens = make_generators([1, 2], x.device)
        extra = {k: make_image(99, 2, 16, 16) for k in effect.extra_images}
        assert torch.equal(first, apply(name, x, items, gens, extra))
