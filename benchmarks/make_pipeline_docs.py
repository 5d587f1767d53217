"""Regenerate the generated parts of docs/pipelines.md and its pictures (docs/img/pipelines/).

The page is written by hand; only the regions between ``<!-- pipelines:NAME:start -->`` and
``<!-- pipelines:NAME:end -->`` are generated, from the code: the request, output and operator
parameter tables from the pydantic models in ``darkroom/apps/pipeline/``, the built-in recipes from
``BUILTIN_RECIPES``, the limits from their constants and settings, the example 422 bodies by
validating bad requests with ``PipelineInput`` (in the shape the API answers), and under each picture
the requests that made it. ``tests/unit/test_pipeline_docs.py`` fails when a region is stale.

The pictures come from the real worker code, in process and on the CPU: each example request runs
through ``worker.pipelines.pipeline`` (prepare, one ``run`` per step, finish with ``sync_mode``) on
procedural images (a landscape, a bottle cut out on transparency, a logo; no downloads), and the
encoded result is shown next to its input. An example whose operator has no kernel yet is skipped
with a warning (its region then says so); run the script again once the kernel exists.

    python benchmarks/make_pipeline_docs.py            # tables and pictures (about a minute on 2 cores)
    python benchmarks/make_pipeline_docs.py --tables   # tables only (no torch work)
    python benchmarks/make_pipeline_docs.py --check    # exit 1 if a generated region is stale
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import math
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ValidationError

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
# Run as a script, this folder comes first on sys.path, and benchmarks/queue.py would shadow the
# stdlib's queue (torch and redis import it): put the checkout there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from darkroom.apps.params import EFFECT_GROUPS  # noqa: E402
from darkroom.apps.pipeline import (  # noqa: E402
    MAX_IMAGES,
    MAX_STEPS,
    MIN_SHRINK_QUALITY,
    OPERATORS,
    PIPELINE,
    OutputSpec,
    PipelineInput,
    check_static,
)
from darkroom.apps.pipeline.base import MAX_SIDE  # noqa: E402
from darkroom.apps.pipeline.operators.overlay import MAX_TEXT  # noqa: E402
from darkroom.apps.pipeline.recipes import BUILTIN_RECIPES, RECIPE_NAME, expand  # noqa: E402
from darkroom.apps.post_processing import MAX_SEED  # noqa: E402
from darkroom.errors import DarkroomError  # noqa: E402
from darkroom.settings import Settings  # noqa: E402

log = logging.getLogger("make_pipeline_docs")
DOC = ROOT / "docs" / "pipelines.md"
IMG_DIR = ROOT / "docs" / "img" / "pipelines"
IMG_LINK = "img/pipelines"  # the pictures' folder as the page links it
MARKER = re.compile(r"<!-- pipelines:(?P<name>[a-z0-9_-]+):start -->\n.*?<!-- pipelines:(?P=name):end -->",
                    re.DOTALL)

# ---- the examples -----------------------------------------------------------------------------------

PHOTO = "https://example.com/photo.jpg"  # placeholders: the runner swaps in the procedural images
BIG_PHOTO = "https://example.com/photo-2400.jpg"
BOTTLE = "https://example.com/bottle.png"
LOGO = "https://example.com/logo.png"


@dataclass(frozen=True)
class Variant:
    label: str
    request: dict  # the request body; without image_url/images, image_url is PHOTO


@dataclass(frozen=True)
class Showcase:
    name: str  # picture: docs/img/pipelines/<name>.webp
    alt: str
    variants: tuple[Variant, ...]
    inputs: tuple[str, ...] = (PHOTO,)  # input panels shown before the results

    @property
    def file(self) -> str:
        return f"{self.name}.webp"


def _steps(*steps: dict, **rest: Any) -> dict:
    return {"steps": list(steps), **rest}


SHADOW = {"offset_y": 24, "blur": 18, "opacity": 0.45}
SHOWCASES: tuple[Showcase, ...] = (
    Showcase("hero", "resize, effects, pad and overlay in one request", (
        Variant("after", _steps(
            {"op": "resize", "width": 720},
            {"op": "effects", "enable_color_correction": True, "temperature": 10, "contrast": 8,
             "enable_grain": True, "grain_style": "kodak", "grain_intensity": 0.15, "enable_vignette": True},
            {"op": "pad", "aspect_ratio": "1:1", "color": "#15181d"},
            {"op": "overlay", "text": "© Darkroom", "size_percent": 4, "opacity": 0.7},
            output={"format": "webp", "quality": 90})),
    )),
    Showcase("resize-fits", "the four fits of resize into a 640×640 box", tuple(
        Variant(fit, _steps({"op": "resize", "width": 640, "height": 640, "fit": fit,
                             **({"background": "#263238"} if fit == "contain" else {})}))
        for fit in ("inside", "contain", "cover", "fill")
    ), inputs=()),
    Showcase("crop", "crop by aspect ratio and by a fractional box", (
        Variant("16:9", _steps({"op": "crop", "aspect_ratio": "16:9"})),
        Variant("1:1, right", _steps({"op": "crop", "aspect_ratio": "1:1", "gravity": "right"})),
        Variant("fraction box", _steps({"op": "crop", "units": "fraction", "x": 0.5, "y": 0.15,
                                        "width": 0.45, "height": 0.6})),
    )),
    Showcase("pad", "pad to a square and by margins", (
        Variant("1:1 white", _steps({"op": "pad", "aspect_ratio": "1:1", "color": "white"})),
        Variant("margins, transparent", _steps(
            {"op": "pad", "top": 48, "right": 48, "bottom": 48, "left": 48, "color": "transparent"})),
    )),
    Showcase("composite-gradient", "a cut-out on a gradient and on transparency, with a drop shadow", (
        Variant("gradient", _steps({
            "op": "composite", "gradient": {"start": "#fdfbfb", "end": "#b8c6db", "angle": 90},
            "width": 800, "height": 800, "scale": 0.8, "shadow": SHADOW},
            image_url=BOTTLE, output={"format": "webp"})),
        Variant("transparent", _steps({
            "op": "composite", "color": "transparent", "width": 800, "height": 800, "scale": 0.8,
            "shadow": SHADOW}, image_url=BOTTLE, output={"format": "webp"})),
    ), inputs=(BOTTLE,)),
    Showcase("composite-image", "a cut-out placed on a reference image", (
        Variant("on the photo", {"images": {"bottle": BOTTLE, "scene": PHOTO}, "steps": [{
            "op": "composite", "image": "scene", "scale": 0.55, "gravity": "bottom_right",
            "offset_x": -80, "offset_y": -24, "shadow": {"offset_x": 18, "offset_y": 10, "blur": 12}}],
            "output": {"format": "jpeg"}}),
    ), inputs=(BOTTLE, PHOTO)),
    Showcase("overlay-text", "text overlays: a signature and a tiled proof mark", (
        Variant("signature", _steps({"op": "overlay", "text": "© 2025 Jane Doe", "size_percent": 5,
                                     "stroke_width": 2, "stroke_color": "#00000099"})),
        Variant("tiled", _steps({"op": "overlay", "text": "PROOF", "font": "dejavu-sans-bold",
                                 "size_percent": 9, "opacity": 0.3, "tiled": True, "margin": 90})),
    )),
    Showcase("overlay-watermark", "a logo as a watermark, once and tiled", (
        Variant("once", {"images": {"photo": PHOTO, "logo": LOGO}, "steps": [{
            "op": "overlay", "image": "logo", "scale": 0.15, "gravity": "top_left", "margin": 24,
            "opacity": 0.9}]}),
        Variant("tiled", {"images": {"photo": PHOTO, "logo": LOGO}, "steps": [{
            "op": "overlay", "image": "logo", "scale": 0.1, "opacity": 0.3, "tiled": True, "margin": 56}]}),
    ), inputs=(LOGO, PHOTO)),
    Showcase("recipe-web-optimise", "the web-optimise recipe on a 2400×1600 photo", (
        Variant("web-optimise", {"image_url": BIG_PHOTO, "recipe": "web-optimise"}),), inputs=(BIG_PHOTO,)),
    Showcase("recipe-film-look", "the film-look recipe", (
        Variant("film-look", {"recipe": "film-look"}),)),
    Showcase("recipe-square-product", "the square-product recipe on a cut-out", (
        Variant("square-product", {"image_url": BOTTLE, "recipe": "square-product"}),), inputs=(BOTTLE,)),
    Showcase("recipe-social-watermark", "the social-watermark recipe with its text overridden", (
        Variant("social-watermark", {"recipe": "social-watermark",
                                     "overrides": {"1": {"text": "© 2025 Jane Doe"}}}),)),
)

# Bad requests whose 422 bodies the page shows (validated here, so the bodies are the code's own).
ERROR_EXAMPLES: tuple[tuple[str, dict], ...] = (
    ("A misspelt key in step 1", _steps({"op": "crop", "aspect_ratio": "1:1"},
                                        {"op": "resize", "width": 800, "colour": "red"})),
    ("An unknown operator", _steps({"op": "rezise", "width": 800})),
    ("A value out of range, in a nested object", _steps(
        {"op": "composite", "color": "white", "shadow": {"opacity": 2}})),
    ("A colour that is not one", _steps({"op": "pad", "top": 20, "color": "blurple"})),
    ("Two ways to crop at once", _steps({"op": "crop", "aspect_ratio": "16:9", "width": 10, "height": 10})),
    ("A reference image that is not given", _steps({"op": "overlay", "image": "logo"})),
    ("A font that is not installed", _steps({"op": "overlay", "text": "hello", "font": "comic-sans"})),
    ("A step larger than max_output_pixels", _steps(
        {"op": "resize", "width": 10000, "height": 10000, "fit": "fill"})),
)


# ---- markdown helpers -------------------------------------------------------------------------------


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _without_none(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    return next((a for a in _without_none(annotation) if isinstance(a, type) and issubclass(a, BaseModel)),
                None)


def _type_name(annotation: Any) -> str:
    names = []
    for a in _without_none(annotation):
        origin = get_origin(a)
        if origin is Literal:
            names.append("enum")
        elif origin is list:
            names.append("list")
        elif origin is dict or (isinstance(a, type) and issubclass(a, BaseModel)):
            names.append("object")
        else:
            names.append(getattr(a, "__name__", str(a)))
    return " or ".join(names)


def _bounds(info) -> str:
    """'1 – 65535', '> 0, ≤ 16', '≥ 0' or '≤ 500 characters' from a field's constraints."""
    if get_origin(ann := _without_none(info.annotation)[0]) is Literal:
        return ", ".join(f"`{v}`" for v in get_args(ann))
    meta = {type(m): m for m in info.metadata}
    ge, gt, le = (getattr(meta.get(t), n, None) for t, n in ((at.Ge, "ge"), (at.Gt, "gt"), (at.Le, "le")))
    length = getattr(meta.get(at.MaxLen), "max_length", None)
    if length is not None:
        return f"≤ {length} characters"
    if ge is not None and le is not None:
        return f"{_num(ge)} – {_num(le)}"
    parts = [f"≥ {_num(ge)}" if ge is not None else "", f"> {_num(gt)}" if gt is not None else "",
             f"≤ {_num(le)}" if le is not None else ""]
    return ", ".join(p for p in parts if p) or ""


def _num(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if abs(value) >= 10_000 else str(value)


def _default(info) -> str:
    if info.default_factory is not None:
        return "see below"
    if info.is_required():
        return "required"
    return "—" if info.default is None else _code(info.default)


def fields_table(model: type[BaseModel], key: tuple[str, ...] | None = None, skip: tuple[str, ...] = ("op",),
                 ) -> list[str]:
    """A model's fields: name, type, default, range or values, (batch key), description; nested
    objects get their own table below."""
    header = ["field", "type", "default", "range / values", *(["batch key"] if key is not None else []),
              "description"]
    rows, nested = [], []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        row = [f"`{name}`", _type_name(info.annotation), _default(info), _bounds(info)]
        if key is not None:
            row.append("yes" if name in key else "")
        rows.append([*row, info.description or ""])
        if (sub := _nested_model(info.annotation)) is not None and sub is not OutputSpec:
            sub_key = tuple(sub.model_fields) if key is not None and name in key else ()
            nested += ["", f"`{name}` is an object with these fields:", "",
                       *fields_table(sub, sub_key if key is not None else None, skip=())]
    return _table(header, rows) + nested


# ---- generated regions ------------------------------------------------------------------------------


def region_input() -> list[str]:
    return fields_table(PipelineInput, skip=())


def region_output() -> list[str]:
    return fields_table(OutputSpec, skip=())


def _effects_anchor(title: str, name: str) -> str:
    """GitHub's anchor for the heading ``## {title} (`{name}`)`` of docs/effects.md."""
    text = f"{title} ({name})".lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def region_op_effects() -> list[str]:
    from worker.effects import load_all
    from worker.effects.registry import EFFECTS

    load_all()
    model = OPERATORS["effects"]
    grouped = {f for g in EFFECT_GROUPS for f in (g.enable_field, *g.params.model_fields)}
    own = [n for n in model.model_fields if n not in grouped and n != "op"]
    rows = []
    for g in EFFECT_GROUPS:
        params = ", ".join(f"`{p}`" for p in g.params.model_fields)
        key = EFFECTS[g.name].key_fields if g.name in EFFECTS else ()
        link = f"[{g.title}](effects.md#{_effects_anchor(g.title, g.name)})"
        rows.append([link, f"`{g.enable_field}`", params, ", ".join(f"`{k}`" for k in key) or "—"])
    table = _table(["effect", "enable with", "parameters (as in effects.md)", "batch key"], rows)
    extra = fields_table(model, skip=tuple(n for n in model.model_fields if n not in own))
    return table + ["", "Besides the effects' own fields, the step has:", "", *extra]


def region_op(name: str) -> Callable[[], list[str]]:
    def render() -> list[str]:
        model = OPERATORS[name]
        return fields_table(model, key=model.key_fields)

    return render


def region_recipes() -> list[str]:
    rows, blocks = [], []
    for r in BUILTIN_RECIPES.values():
        out = r.output.model_dump(exclude_none=True)
        ops = " → ".join(f"`{s.op}`" for s in r.steps)
        rows.append([f"`{r.name}`", r.description, ops, _code(out)])
        steps = [s.model_dump(mode="json", exclude_defaults=True) | {"op": s.op} for s in r.steps]
        blocks += ["", f"`{r.name}` (version {r.version}):", "", "```json",
                   json.dumps({"steps": [{"op": s.pop("op"), **s} for s in steps], "output": out},
                              ensure_ascii=False), "```"]
    return _table(["recipe", "what it does", "steps", "output"], rows) + blocks


def region_limits() -> list[str]:
    s = Settings.model_fields
    rows = [
        ["steps per request or recipe", f"1 – {MAX_STEPS}", "422 at submit"],
        ["images per request (`images`, dissolve images included)", f"1 – {MAX_IMAGES}", "422 at submit"],
        ["image names", "`^[A-Za-z][A-Za-z0-9_-]{0,31}$`", "422 at submit"],
        ["pixels a step may make (width × height)",
         f"{s['max_output_pixels'].default:,} (`DARKROOM_MAX_OUTPUT_PIXELS`)",
         "422 at submit when the step gives both sides, else the job fails with `invalid_input`"],
        ["a `width`, `height` or margin field", f"≤ {_num(MAX_SIDE)} px", "422 at submit"],
        ["input images", f"{s['max_pixels'].default:,} pixels, {s['max_side_px'].default:,} px a side, "
         f"{s['max_input_bytes'].default // 2**20} MiB (`DARKROOM_MAX_PIXELS`, `…_MAX_SIDE_PX`, "
         "`…_MAX_INPUT_BYTES`)", "422 at submit for data URIs, else the job fails"],
        ["overlay `text`", f"{MAX_TEXT} characters", "422 at submit"],
        ["`output.max_bytes`", f"1024 – 2³¹; lossy quality never drops below {MIN_SHRINK_QUALITY}",
         "the job fails with `output_too_large`"],
        ["recipe names", f"`{RECIPE_NAME.pattern}`", "422"],
        ["`seed`", f"0 – {_num(MAX_SEED)}", "422 at submit"],
    ]
    return _table(["what", "limit", "when it is passed"], rows)


def region_operators() -> list[str]:
    rows = []
    for op, model in sorted(OPERATORS.items()):
        schema = model.__module__.replace(".", "/") + ".py"
        kernel = f"worker/operators/{op}.py"
        present = "" if (ROOT / kernel).exists() else " (missing)"
        key = ", ".join(f"`{k}`" for k in model.key_fields) or "—"
        rows.append([f"`{op}`", f"`{schema}`", f"`{kernel}`{present}", key])
    return _table(["op", "schema (torch-free)", "kernel", "step fields in the batch key"], rows)


def api_error(request: dict) -> dict:
    """The 422 body the API answers for ``request`` (FastAPI's shape for schema errors, Darkroom's
    ``detail``/``error_type`` for the checks that need settings), or {} when it is accepted."""
    body = {"image_url": PHOTO, **request}
    try:
        model = PipelineInput.model_validate(body)
        check_static(model, SimpleNamespace(fonts_dir=None, max_output_pixels=_default_output_pixels()))
    except ValidationError as exc:
        errors = [{**e, "loc": ["body", *e["loc"]]} for e in exc.errors(include_url=False)]
        return {"detail": json.loads(json.dumps(errors, default=str, ensure_ascii=False))}
    except DarkroomError as exc:
        return {"detail": exc.detail, "error_type": exc.code}
    return {}


def _default_output_pixels() -> int:
    return Settings.model_fields["max_output_pixels"].default


def _answer_lines(answer: dict) -> list[str]:
    """A 422 body with one line per error."""
    if isinstance(answer["detail"], str):
        return [json.dumps(answer, ensure_ascii=False)]
    items = [json.dumps(e, ensure_ascii=False) for e in answer["detail"]]
    return ['{"detail": [', *(f"  {item}," for item in items[:-1]), f"  {items[-1]}", "]}"]


def region_errors() -> list[str]:
    lines: list[str] = []
    for title, request in ERROR_EXAMPLES:
        answer = api_error(request)
        if not answer:
            raise RuntimeError(f"error example {title!r} is accepted: change it")
        lines += [f"**{title}.** `\"steps\": {json.dumps(request['steps'], ensure_ascii=False)}` →", "",
                  "```json", *_answer_lines(answer), "```", ""]
    return lines[:-1]


def _request_text(request: dict) -> str:
    order = ("image_url", "images", "recipe", "overrides", "steps", "output")
    shown = {k: request[k] for k in sorted(request, key=lambda k: order.index(k) if k in order else 99)}
    return _code({k: v for k, v in shown.items() if not (k == "image_url" and v == PHOTO)})


def region_example(show: Showcase, img_dir: Path) -> Callable[[], list[str]]:
    def render() -> list[str]:
        names = [Path(u).name for u in show.inputs]
        order = [*(f"the input `{n}`" for n in names), *(f"**{v.label}**" for v in show.variants)]
        if (img_dir / show.file).exists():
            head = [f"![{show.alt}]({IMG_LINK}/{show.file})", "", "Left to right: " + ", ".join(order) + "."]
        else:
            head = [f"*(No picture yet: an operator of this example had no kernel when "
                    f"`benchmarks/make_pipeline_docs.py` last ran; `{show.file}` is missing.)*"]
        lines = [*head, ""]
        for v in show.variants:
            lines.append(f"- **{v.label}**: {_request_text(v.request)}")
        return lines

    return render


def regions(img_dir: Path = IMG_DIR) -> dict[str, Callable[[], list[str]]]:
    out: dict[str, Callable[[], list[str]]] = {
        "input": region_input, "output": region_output, "recipes": region_recipes,
        "limits": region_limits, "operators": region_operators, "errors": region_errors,
    }
    for op in OPERATORS:
        out[f"op-{op}"] = region_op_effects if op == "effects" else region_op(op)
    for show in SHOWCASES:
        out[f"example-{show.name}"] = region_example(show, img_dir)
    return out


def render_doc(text: str, img_dir: Path = IMG_DIR) -> str:
    """``text`` with every generated region rewritten; ValueError naming regions missing or unknown."""
    makers = regions(img_dir)
    found = [m.group("name") for m in MARKER.finditer(text)]
    missing, unknown = sorted(set(makers) - set(found)), sorted(set(found) - set(makers))
    if missing or unknown:
        raise ValueError(f"docs/pipelines.md regions: missing {missing or 'none'}, unknown "
                         f"{unknown or 'none'}; add or remove <!-- pipelines:NAME:start/end --> markers")

    def replace(m: re.Match) -> str:
        name = m.group("name")
        body = "\n".join(makers[name]()).rstrip()
        return f"<!-- pipelines:{name}:start -->\n{body}\n<!-- pipelines:{name}:end -->"

    return MARKER.sub(replace, text)


# ---- procedural images ------------------------------------------------------------------------------


def _ridge(rng, w: int, base: float, amp: float) -> Any:
    import numpy as np

    x = np.linspace(0, 1, w)
    y = np.zeros(w)
    for octave in range(6):
        f = 2 ** octave * 1.5
        y += amp / (1.7 ** octave) * np.sin(2 * np.pi * (f * x + rng.random()))
    return base + y


def make_photo(w: int, h: int, seed: int = 3) -> Any:
    """A landscape at dusk: sky, sun, three mountain ranges, a lake with their reflection, a tree
    and sensor noise, as (H, W, 3) float32 in [0, 1]. Scales with (w, h)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    horizon = 0.62
    t = np.clip(v / horizon, 0, 1)[..., None]
    img = (1 - t) * np.array([0.12, 0.2, 0.45]) + t * np.array([0.98, 0.62, 0.35])
    sun = np.hypot((u - 0.7) * w / h, v - 0.45)
    img += np.exp(-(sun / 0.12) ** 2)[..., None] * np.array([0.5, 0.35, 0.1])
    img[sun < 0.045] = (1.0, 0.93, 0.75)
    ranges = ((0.42, 0.06, (0.55, 0.42, 0.52)), (0.5, 0.05, (0.33, 0.25, 0.36)),
              (0.57, 0.035, (0.16, 0.13, 0.2)))  # (ridge height, roughness, colour), far to near
    for i, (base, amp, colour) in enumerate(ranges):
        top = _ridge(rng, w, base, amp)
        mask = (v > top[None, :]) & (v < horizon)
        shade = 1 - 0.25 * (v - top[None, :]) / 0.2
        img[mask] = (np.array(colour)[None, :] * shade[mask][:, None]) * (1 - 0.1 * i)
    lake = v >= horizon
    mirror = np.clip((2 * horizon - v) * h, 0, h - 1).astype(int)
    ripple = (np.sin(v * h * 0.9) * 3 * (v - horizon) * 6).astype(int)
    cols = np.clip(xx.astype(int) + ripple, 0, w - 1)
    img[lake] = img[mirror[lake], cols[lake]] * 0.65 + np.array([0.02, 0.05, 0.1])
    for x0, top in ((0.1, 0.36), (0.15, 0.28), (0.2, 0.4), (0.87, 0.47)):  # pines on the shore
        pine = (np.abs(u - x0) * w / h < (v - top) * 0.16) & (v > top) & (v < horizon - 0.01)
        img[pine | ((np.abs(u - x0) * w < 0.004 * h) & (v > top) & (v < horizon))] = (0.04, 0.07, 0.05)
    img += rng.normal(0, 0.012, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def make_bottle(w: int = 480, h: int = 600) -> Any:
    """A glass bottle with a label and a cap, cut out on transparency: (H, W, 4) float32."""
    import numpy as np

    ss = 3  # supersampled, then averaged: smooth edges
    yy, xx = np.mgrid[0 : h * ss, 0 : w * ss].astype(np.float32) / ss
    x, y = (xx - w / 2) / w, yy / h
    half = np.where(y > 0.38, 0.28, np.where(y > 0.22, 0.09 + (y - 0.22) / 0.16 * 0.19, 0.09))
    body = (np.abs(x) < half) & (y > 0.1) & (y < 0.95)
    cap = (np.abs(x) < 0.1) & (y > 0.04) & (y <= 0.12)
    light = np.cos(np.clip(x / np.maximum(half, 1e-3), -1, 1) * 1.3)[..., None]
    rgb = np.array([0.1, 0.42, 0.32]) * (0.45 + 0.65 * light) + 0.25 * (np.abs(x + 0.12) < 0.02)[..., None]
    label = body & (y > 0.5) & (y < 0.78)
    stripes = np.where(((y * 40).astype(int) % 4 == 0)[..., None], (0.8, 0.25, 0.2), (0.96, 0.93, 0.85))
    rgb = np.where(label[..., None], stripes * (0.7 + 0.3 * light), rgb)
    rgb = np.where(cap[..., None], np.array([0.75, 0.6, 0.25]) * (0.6 + 0.4 * light), rgb)
    alpha = (body | cap).astype(np.float32)[..., None]
    rgba = np.concatenate([rgb * alpha, alpha], axis=-1)
    rgba = rgba.reshape(h, ss, w, ss, 4).mean(axis=(1, 3))
    a = rgba[..., 3:]
    return np.concatenate([np.where(a > 0, rgba[..., :3] / np.maximum(a, 1e-6), 0), a], -1).astype(np.float32)


def make_logo(size: int = 240) -> Any:
    """A round logo with a letter, on transparency: (H, W, 4) float32."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from darkroom.fonts import PACKAGED

    big = size * 4
    im = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    draw.ellipse((8, 8, big - 8, big - 8), outline=(255, 255, 255, 255), width=big // 14)
    font = ImageFont.truetype(str(PACKAGED["dejavu-sans-bold"]), int(big * 0.55))
    draw.text((big / 2, big / 2), "D", font=font, fill=(255, 255, 255, 255), anchor="mm")
    small = im.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(small).astype(np.float32) / 255


def _png(arr: Any) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def make_assets() -> dict[str, bytes]:
    """The placeholder URLs' images, as PNG files."""
    return {PHOTO: _png(make_photo(960, 640)), BIG_PHOTO: _png(make_photo(2400, 1600)),
            BOTTLE: _png(make_bottle()), LOGO: _png(make_logo())}


# ---- running the real pipeline ----------------------------------------------------------------------


def expand_request(request: dict) -> dict:
    """A request naming a built-in recipe as the API expands it (api/recipes.py: the recipe's steps
    with the overrides merged in, and its output block unless the request gives one)."""
    if "recipe" not in request:
        return dict(request)
    recipe = BUILTIN_RECIPES[request["recipe"]]
    overrides = {int(k): v for k, v in (request.get("overrides") or {}).items()}
    out = {k: v for k, v in request.items() if k not in ("recipe", "overrides")}
    out["steps"] = expand(recipe, overrides)
    out.setdefault("output", recipe.output.model_dump(mode="json"))
    return out


def _data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def run_request(request: dict, assets: dict[str, bytes], seed: int) -> tuple[dict, bytes]:
    """Run one request through worker.pipelines.pipeline (prepare, run per step, finish) on the CPU;
    returns the result body and the encoded output image."""
    import torch

    from darkroom.acceptance import ImageLimits
    from darkroom.job import JobRecord
    from worker.batcher import Requeue
    from worker.pipelines import pipeline

    body = expand_request(request)
    if "images" not in body:
        body.setdefault("image_url", PHOTO)
    if "image_url" in body:
        body["image_url"] = _data_uri(assets[body["image_url"]])
    if "images" in body:
        body["images"] = {name: _data_uri(assets[url]) for name, url in body["images"].items()}
    body.update(seed=seed, sync_mode=True)
    model = PipelineInput.model_validate(body)
    settings = Settings()
    ctx = SimpleNamespace(settings=settings, objects=None, device=torch.device("cpu"),
                          limits=ImageLimits.from_settings(settings),
                          step_stop=lambda _id: None)  # never cancelled, taken over or late
    job = JobRecord(id="docs", app_id=PIPELINE, base_id=PIPELINE, input=body, seed=seed, created_at=0.0)
    with torch.inference_mode():
        prepared = pipeline.prepare(ctx, job, model)
        out = [Requeue(prepared.batch_key)]
        while isinstance(out[0], Requeue):
            out = pipeline.run(ctx, [prepared])
        result = pipeline.finish(ctx, prepared, out[0])
    url = result["images"][0].pop("url")
    return result, base64.b64decode(url.split(",", 1)[1])


def missing_kernels(show: Showcase) -> list[str]:
    """The ops of ``show`` that have no kernel in worker/operators/ (or whose module does not load)."""
    from worker.operators import get_kernel

    ops = {s["op"] for v in show.variants for s in expand_request(v.request).get("steps", [])}
    missing = []
    for op in sorted(ops):
        try:
            get_kernel(op)
        except Exception as exc:  # noqa: BLE001 - a kernel being written may not even import yet
            log.debug("kernel %s: %r", op, exc)
            missing.append(op)
    return missing


# ---- pictures ---------------------------------------------------------------------------------------

PANEL_H = 300  # the tallest panel's height in px
SHEET_W = 1000  # most width of a picture
LABEL_H = 22
GAP = 10


def _rgba_u8(data: bytes) -> Any:
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def _checker(w: int, h: int, cell: int = 8) -> Any:
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w]
    light = ((xx // cell + yy // cell) % 2 == 0)[..., None]
    return np.where(light, 0.93, 0.8) * np.ones(3, np.float32)


def sheet(panels: list[tuple[str, Any]]) -> Any:
    """The panels (label, (H, W, 4) uint8) side by side at one scale, transparency on a checkerboard,
    each labelled underneath; an (H, W, 3) uint8 array."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from darkroom.fonts import PACKAGED

    font = ImageFont.truetype(str(PACKAGED["dejavu-sans"]), 13)
    labels = [math.ceil(font.getlength(label)) + 4 for label, _ in panels]
    tallest = max(p.shape[0] for _, p in panels)
    scale = min(PANEL_H / tallest, (SHEET_W - GAP * (len(panels) + 1)) / sum(p.shape[1] for _, p in panels))
    sizes = [(max(1, round(p.shape[1] * scale)), max(1, round(p.shape[0] * scale))) for _, p in panels]
    cells = [max(w, lw) for (w, _), lw in zip(sizes, labels, strict=True)]  # wide enough for the label
    width = GAP * (len(panels) + 1) + sum(cells)
    canvas = Image.new("RGB", (width, round(tallest * scale) + LABEL_H + 2 * GAP), "white")
    draw = ImageDraw.Draw(canvas)
    left = GAP
    for (label, arr), size, cell in zip(panels, sizes, cells, strict=True):
        small = np.asarray(Image.fromarray(arr, "RGBA").resize(size, Image.Resampling.LANCZOS)) / 255.0
        a = small[..., 3:]
        rgb = small[..., :3] * a + _checker(*size) * (1 - a)
        x = left + (cell - size[0]) // 2
        canvas.paste(Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)), (x, GAP))
        draw.rectangle((x - 1, GAP - 1, x + size[0], GAP + size[1]), outline=(200, 200, 200))
        draw.text((left + cell / 2, GAP + size[1] + 4), label, font=font, fill=(70, 70, 70), anchor="ma")
        left += cell + GAP
    return np.asarray(canvas)


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} KB"


def make_picture(show: Showcase, assets: dict[str, bytes], seed: int, max_kb: int) -> bytes:
    from worker import imaging

    panels = []
    for url in show.inputs:
        arr = _rgba_u8(assets[url])
        panels.append((f"input · {arr.shape[1]}×{arr.shape[0]}", arr))
    for v in show.variants:
        result, data = run_request(v.request, assets, seed)
        image = result["images"][0]
        steps = ", ".join(f"{s['op']} {s['ms']:.0f} ms" for s in result["metrics"]["steps"])
        log.info("  %s: %dx%d %s, %s (%s)", v.label, image["width"], image["height"], image["content_type"],
                 _kb(image["file_size"]), steps)
        kind = image["content_type"].split("/")[1].upper()
        panels.append((f"{v.label} · {image['width']}×{image['height']} {kind}", _rgba_u8(data)))
    encoded = imaging.encode_within(sheet(panels), None, None, "webp", 80, max_kb * 1024)
    return encoded.data


# ---- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    add = parser.add_argument
    add("--tables", action="store_true", help="rewrite the generated regions only (no pictures)")
    add("--check", action="store_true", help="change nothing; exit 1 if a generated region is stale")
    add("--only", action="append", metavar="NAME", choices=[s.name for s in SHOWCASES],
        help="make only this picture (repeatable): " + ", ".join(s.name for s in SHOWCASES))
    add("--max-kb", type=int, default=48, help="size cap per picture in KB (default: %(default)s)")
    add("--seed", type=int, default=7, help="the requests' seed (default: %(default)s)")
    return parser.parse_args(argv)


def make_pictures(args: argparse.Namespace) -> tuple[int, list[str]]:
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    assets = make_assets()
    written, skipped = 0, []
    for show in SHOWCASES:
        if args.only and show.name not in args.only:
            continue
        missing = missing_kernels(show)
        if missing:
            log.warning("skipping %s: no kernel for %s in worker/operators/ yet; run this script again "
                        "once it exists", show.name, ", ".join(missing))
            skipped.append(show.name)
            continue
        log.info("%s", show.name)
        data = make_picture(show, assets, args.seed, args.max_kb)
        (IMG_DIR / show.file).write_bytes(data)
        log.info("  wrote %s (%s)", (IMG_DIR / show.file).relative_to(ROOT), _kb(len(data)))
        written += 1
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    text = DOC.read_text(encoding="utf-8")
    if args.check:
        stale = render_doc(text) != text
        print("docs/pipelines.md is stale: run benchmarks/make_pipeline_docs.py --tables" if stale
              else "docs/pipelines.md is up to date")
        return int(stale)
    written, skipped = (0, []) if args.tables else make_pictures(args)
    DOC.write_text(render_doc(text), encoding="utf-8")
    total = sum(p.stat().st_size for p in IMG_DIR.glob("*")) if IMG_DIR.exists() else 0
    print(f"wrote docs/pipelines.md's tables and {written} pictures ({_kb(total)} in {IMG_LINK}/ in all); "
          f"skipped: {', '.join(skipped) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
