"""What every pipeline operator shares: the step model, the registry, colours, gravity and sizes.

An operator is one file in ``darkroom/apps/pipeline/operators/``: a pydantic model (strict: unknown
keys are refused) whose ``op`` field names it, decorated with :func:`register_operator`. Its device
side is one file of the same name in ``worker/operators/``. Everything here is torch-free, so the API
validates a whole pipeline, sizes included, before a job exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

Size = tuple[int, int]  # (width, height)
Gravity = Literal[
    "center", "top", "bottom", "left", "right", "top_left", "top_right", "bottom_left", "bottom_right"
]
MAX_SIDE = 65_535
_ANCHORS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5), "top": (0.5, 0.0), "bottom": (0.5, 1.0), "left": (0.0, 0.5),
    "right": (1.0, 0.5), "top_left": (0.0, 0.0), "top_right": (1.0, 0.0),
    "bottom_left": (0.0, 1.0), "bottom_right": (1.0, 1.0),
}


class StepError(ValueError):
    """A step that cannot run on the image it gets (e.g. a crop box outside it); ``field`` is the
    offending key, so the error names the step and the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Operator(BaseModel):
    """One step. ``key_fields``: the fields batch-mates must share (besides the image size);
    every other field may differ within a batch."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    op: str
    key_fields: ClassVar[tuple[str, ...]] = ()

    def output_size(self, size: Size, refs: dict[str, Size]) -> Size:
        """The size this step makes from an image of ``size``; ``refs``: the reference images'
        sizes. Raises :class:`StepError` when the step cannot apply."""
        return size

    def references(self) -> list[str]:
        """Names of the reference images (``images``) this step reads."""
        return []

    def model_names(self) -> list[str]:
        """Names (in darkroom.models' registry) of the models this step runs; the API refuses the
        request when one is not on disk, naming the pull command."""
        return []

    def batch_key(self) -> tuple:
        return (self.op, *(_hashable(getattr(self, f)) for f in self.key_fields))


def _hashable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return tuple(sorted((k, _hashable(v)) for k, v in value.model_dump().items()))
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


OPERATORS: dict[str, type[Operator]] = {}
OperatorT = TypeVar("OperatorT", bound=type[Operator])


def register_operator(model: OperatorT) -> OperatorT:
    """Register a step model under the literal of its ``op`` field."""
    name = model.model_fields["op"].default
    if not isinstance(name, str) or not name:
        raise ValueError(f"{model.__name__}: give op a default, e.g. op: Literal['x'] = 'x'")
    if name in OPERATORS:
        raise ValueError(f"operator {name!r} registered twice")
    OPERATORS[name] = model
    return model


# --- colours ---------------------------------------------------------------------------------------

RGBA = tuple[float, float, float, float]
_HEX = re.compile(r"^#([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")


def parse_color(value: str) -> RGBA:
    """``#rgb``, ``#rgba``, ``#rrggbb``, ``#rrggbbaa``, a CSS colour name, ``rgb(…)`` or
    ``transparent``, as floats in [0, 1]."""
    text = value.strip().lower()
    if text == "transparent":
        return (0.0, 0.0, 0.0, 0.0)
    if text.startswith("#"):
        if not _HEX.match(text):
            raise ValueError(f"{value!r} is not a colour: use #rrggbb or #rrggbbaa")
        digits = text[1:]
        if len(digits) <= 4:
            digits = "".join(d * 2 for d in digits)
        digits = digits if len(digits) == 8 else digits + "ff"
        return tuple(int(digits[i : i + 2], 16) / 255 for i in range(0, 8, 2))  # type: ignore[return-value]
    rgba = _named_color(text)
    if rgba is None:
        raise ValueError(
            f"{value!r} is not a colour: use #rrggbb, #rrggbbaa, a CSS name such as 'white' or 'transparent'"
        )
    return tuple(c / 255 for c in rgba)  # type: ignore[return-value]


_BASIC_NAMES = {
    "white": (255, 255, 255, 255), "black": (0, 0, 0, 255), "red": (255, 0, 0, 255),
    "green": (0, 128, 0, 255), "blue": (0, 0, 255, 255), "grey": (128, 128, 128, 255),
    "gray": (128, 128, 128, 255), "yellow": (255, 255, 0, 255),
}


def _named_color(text: str) -> tuple[int, int, int, int] | None:
    """A CSS colour name or ``rgb()``/``hsl()`` form through Pillow's table (imported here: the
    client, which imports these models, does not install Pillow); a few basic names without it."""
    try:
        from PIL import ImageColor
    except ImportError:
        return _BASIC_NAMES.get(text)
    try:
        return ImageColor.getcolor(text, "RGBA")  # type: ignore[return-value]
    except ValueError:
        return None


def Color(default: str, description: str) -> Any:  # noqa: N802 - a field factory, named like a type
    return Field(default, description=description + " (#rrggbb, #rrggbbaa, a CSS name or 'transparent')")


def check_color(value: str | None) -> str | None:
    if value is not None:
        parse_color(value)
    return value


def color_validator(*fields: str) -> Callable:
    return field_validator(*fields)(classmethod(lambda cls, v: check_color(v)))


# --- geometry --------------------------------------------------------------------------------------


def parse_aspect(value: str | float) -> float:
    """``"16:9"``, ``"1.5"`` or ``1.5`` as width / height."""
    if isinstance(value, int | float):
        ratio = float(value)
    else:
        parts = str(value).replace("/", ":").split(":")
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"aspect_ratio {value!r}: write it as 'W:H' (e.g. '16:9') or a number") from None
        if len(nums) == 1:
            ratio = nums[0]
        elif len(nums) == 2 and nums[1] > 0:
            ratio = nums[0] / nums[1]
        else:
            raise ValueError(f"aspect_ratio {value!r}: write it as 'W:H' (e.g. '16:9') or a number")
    if not (math.isfinite(ratio) and 1 / 100 <= ratio <= 100):
        raise ValueError(f"aspect_ratio {value!r} must be between 1:100 and 100:1")
    return ratio


def aspect_validator(*fields: str) -> Callable:
    def check(cls, v):
        if v is not None:
            parse_aspect(v)
        return v

    return field_validator(*fields)(classmethod(check))


def anchor(gravity: str) -> tuple[float, float]:
    """Where gravity pins a box: (0, 0) top-left, (0.5, 0.5) centre, (1, 1) bottom-right."""
    return _ANCHORS[gravity]


def place(outer: Size, inner: Size, gravity: str, offset: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """Top-left corner (x, y) of an ``inner`` box pinned inside ``outer`` by ``gravity``, moved by
    ``offset`` (may be negative or past the edges)."""
    fx, fy = anchor(gravity)
    x = round((outer[0] - inner[0]) * fx) + offset[0]
    y = round((outer[1] - inner[1]) * fy) + offset[1]
    return x, y


def multiplied(size: Size, factor: int, field: str = "scale") -> Size:
    """``size`` times a whole ``factor``; StepError (at ``field``) past MAX_SIDE a side."""
    w, h = size[0] * factor, size[1] * factor
    if max(w, h) > MAX_SIDE:
        raise StepError(field, f"makes a {w}x{h} image; a side may not pass {MAX_SIDE:,} px")
    return w, h


def scaled(size: Size, factor: float) -> Size:
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def aspect_box(size: Size, ratio: float, grow: bool) -> Size:
    """The box of aspect ``ratio`` that fits inside ``size`` (``grow=False``: a crop) or contains it
    (``grow=True``: a pad)."""
    w, h = size
    wide = w / h > ratio
    if grow:  # a pad lengthens the short side
        return (w, max(h, round(w / ratio))) if wide else (max(w, round(h * ratio)), h)
    return (min(w, max(1, round(h * ratio))), h) if wide else (w, min(h, max(1, round(w / ratio))))
