"""The ``darkroom/pipeline`` input model and its checks: every documented refusal, where pydantic
locates it (``steps.<index>.<op>.<field>``), fal's ``dissolve_image_url`` lifted into ``images``, and
the size and font checks that name ``steps.<i>.<op>``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from darkroom.apps.pipeline import (
    MAX_IMAGES,
    MAX_STEPS,
    STEP_ADAPTER,
    PipelineInput,
    check_fonts,
    check_sizes,
    check_static,
    step_sizes,
)
from darkroom.apps.pipeline.base import parse_aspect, parse_color
from darkroom.errors import InvalidInput
from darkroom.settings import Settings

URL = "https://example.com/a.png"
OTHER = "https://example.com/b.png"
CROP = {"op": "crop", "aspect_ratio": "1:1"}


def body(**fields: Any) -> dict[str, Any]:
    return {"image_url": URL, "steps": [CROP]} | fields


def errors(data: dict[str, Any], **kwargs: Any) -> list[tuple[tuple, str]]:
    """(loc, msg) of every error of ``data``; fails when it validates."""
    with pytest.raises(ValidationError) as info:
        PipelineInput.model_validate(data, **kwargs)
    return [(tuple(e["loc"]), e["msg"]) for e in info.value.errors()]


def only_error(data: dict[str, Any], **kwargs: Any) -> tuple[tuple, str]:
    found = errors(data, **kwargs)
    assert len(found) == 1, found
    return found[0]


def step(**fields: Any):
    return STEP_ADAPTER.validate_python(fields)


# --- exactly-one rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"op": "resize", "width": 10, "scale": 2}, "give width/height or scale, not both"),
        ({"op": "resize", "height": 10, "scale": 0.5}, "give width/height or scale, not both"),
        ({"op": "resize"}, "give width, height or scale"),
        ({"op": "resize", "fit": "cover"}, "give width, height or scale"),
        ({"op": "crop", "width": 10, "height": 10, "aspect_ratio": 1}, "or aspect_ratio, not both"),
        ({"op": "crop"}, "give a box (width and height) or aspect_ratio"),
        ({"op": "crop", "width": 10}, "a crop box needs both width and height"),
        ({"op": "crop", "height": 10}, "a crop box needs both width and height"),
        ({"op": "crop", "width": 1.5, "height": 10}, "a box in px needs whole numbers"),
        ({"op": "crop", "x": 0.5, "width": 10, "height": 10}, "a box in px needs whole numbers"),
        ({"op": "crop", "width": 1.5, "height": 0.5, "units": "fraction"}, "width is a fraction"),
        ({"op": "crop", "x": 2, "width": 0.5, "height": 0.5, "units": "fraction"}, "x is a fraction"),
        ({"op": "pad"}, "give one of: width/height, aspect_ratio or margins"),
        ({"op": "pad", "width": 10, "aspect_ratio": "1:1"}, "give one of"),
        ({"op": "pad", "aspect_ratio": "16:9", "top": 3}, "give one of"),
        ({"op": "pad", "height": 10, "left": 3}, "give one of"),
        ({"op": "overlay"}, "give text or image"),
        ({"op": "overlay", "text": "hi", "image": "logo"}, "give text or image"),
    ],
)
def test_exactly_one_rules_name_the_step(fields, message):
    data = body(steps=[CROP, fields], images=None)
    loc, msg = only_error(data)
    assert loc == ("steps", 1, fields["op"])
    assert message in msg


@pytest.mark.parametrize(
    "fields",
    [
        {"op": "resize", "width": 10},
        {"op": "resize", "height": 10, "fit": "cover"},
        {"op": "resize", "scale": 0.5},
        {"op": "crop", "x": 1, "y": 2, "width": 10, "height": 10},
        {"op": "crop", "width": 10.0, "height": 10.0},  # whole numbers written as floats
        {"op": "crop", "x": 0.25, "width": 0.5, "height": 1, "units": "fraction"},
        {"op": "pad", "width": 10},
        {"op": "pad", "aspect_ratio": 1.5},
        {"op": "pad", "top": 1, "left": 2},
        {"op": "overlay", "text": "hi"},
    ],
)
def test_one_mode_each_is_accepted(fields):
    parsed = PipelineInput.model_validate(body(steps=[fields])).steps[0]
    assert parsed.op == fields["op"]
    assert {k: getattr(parsed, k) for k in fields} == fields


# --- unknown ops and keys -------------------------------------------------------------------------


def test_unknown_op_is_refused_at_the_step_listing_the_known_ops():
    loc, msg = only_error(body(steps=[CROP, CROP, {"op": "blur", "radius": 3}]))
    assert loc == ("steps", 2)
    assert "'blur'" in msg
    for known in ("resize", "crop", "pad", "effects", "composite", "overlay"):
        assert f"'{known}'" in msg


def test_a_step_without_op_or_not_an_object_is_refused():
    assert only_error(body(steps=[{"width": 3}]))[0] == ("steps", 0)
    assert only_error(body(steps=[CROP, "resize"]))[0] == ("steps", 1)


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"op": "resize", "width": 10, "bogus": 1}, "bogus"),
        ({"op": "crop", "aspect_ratio": 1, "left": 3}, "left"),  # pad's field, not crop's
        ({"op": "pad", "top": 2, "colour": "red"}, "colour"),
        ({"op": "effects", "enable_blur": True, "blur_strength": 2}, "blur_strength"),
    ],
)
def test_unknown_keys_inside_a_step_are_refused_by_name(fields, key):
    loc, msg = only_error(body(steps=[CROP, CROP, CROP, fields]))
    assert loc == ("steps", 3, fields["op"], key)
    assert msg == "Extra inputs are not permitted"


def test_unknown_keys_outside_the_steps_are_refused():
    assert only_error(body(extra=1)) == (("extra",), "Extra inputs are not permitted")
    assert only_error(body(output={"format": "png", "dpi": 72}))[0] == ("output", "dpi")


def test_errors_in_several_steps_each_name_their_index_and_field():
    data = body(steps=[CROP, {"op": "pad", "top": 1, "color": "nope"}, {"op": "resize", "width": 0}])
    locs = [loc for loc, _ in errors(data)]
    assert locs == [("steps", 1, "pad", "color"), ("steps", 2, "resize", "width")]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"op": "resize", "width": 0}, "width"),
        ({"op": "resize", "width": 70_000}, "width"),
        ({"op": "resize", "scale": 0}, "scale"),
        ({"op": "resize", "scale": 17}, "scale"),
        ({"op": "resize", "width": 10, "fit": "stretch"}, "fit"),
        ({"op": "resize", "width": 10, "filter": "nearest"}, "filter"),
        ({"op": "resize", "width": 10, "gravity": "middle"}, "gravity"),
        ({"op": "crop", "width": 0, "height": 10}, "width"),
        ({"op": "crop", "x": -1, "width": 5, "height": 10}, "x"),
        ({"op": "crop", "width": 5, "height": 5, "units": "percent"}, "units"),
        ({"op": "pad", "top": -1}, "top"),
        ({"op": "effects", "brightness": float("nan")}, "brightness"),
        ({"op": "effects", "brightness": float("inf")}, "brightness"),
    ],
)
def test_bad_values_name_step_and_field(fields, field):
    loc, _ = only_error(body(steps=[CROP, fields]))
    assert loc == ("steps", 1, fields["op"], field)


# --- colours and aspect ratios --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rgba"),
    [
        ("#fff", (1, 1, 1, 1)),
        ("#f008", (1, 0, 0, 0x88 / 255)),
        ("#00ff00", (0, 1, 0, 1)),
        ("#0000ff80", (0, 0, 1, 0x80 / 255)),
        ("#ABCDEF", (0xAB / 255, 0xCD / 255, 0xEF / 255, 1)),
        ("red", (1, 0, 0, 1)),
        (" White ", (1, 1, 1, 1)),
        ("transparent", (0, 0, 0, 0)),
        ("TRANSPARENT", (0, 0, 0, 0)),
        ("rgb(0, 128, 255)", (0, 128 / 255, 1, 1)),
    ],
)
def test_parse_color(text, rgba):
    assert parse_color(text) == pytest.approx(rgba)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("#12", "use #rrggbb or #rrggbbaa"),
        ("#12345", "use #rrggbb or #rrggbbaa"),
        ("#ggg", "use #rrggbb or #rrggbbaa"),
        ("#123456789", "use #rrggbb or #rrggbbaa"),
        ("nocolour", "a CSS name such as 'white'"),
        ("", "a CSS name such as 'white'"),
    ],
)
def test_parse_color_refuses_with_a_hint(text, hint):
    with pytest.raises(ValueError, match="is not a colour") as info:
        parse_color(text)
    assert hint in str(info.value)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"op": "pad", "top": 1, "color": "#12"}, "color"),
        ({"op": "resize", "width": 9, "height": 9, "fit": "contain", "background": "bluish"}, "background"),
        ({"op": "overlay", "text": "x", "color": "#zzzzzz"}, "color"),
        ({"op": "overlay", "text": "x", "stroke_color": "nope"}, "stroke_color"),
    ],
)
def test_bad_colours_name_the_field(fields, field):
    loc, msg = only_error(body(steps=[fields]))
    assert loc == ("steps", 0, fields["op"], field)
    assert "is not a colour" in msg


@pytest.mark.parametrize(
    ("value", "ratio"),
    [("16:9", 16 / 9), ("4/3", 4 / 3), ("1.5", 1.5), (1.5, 1.5), (2, 2.0), ("1:100", 0.01), (100, 100.0)],
)
def test_parse_aspect(value, ratio):
    assert parse_aspect(value) == pytest.approx(ratio)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "write it as 'W:H'"),
        ("16:9:1", "write it as 'W:H'"),
        ("16:0", "write it as 'W:H'"),
        ("16:x", "write it as 'W:H'"),
        ("0:1", "between 1:100 and 100:1"),
        ("1:200", "between 1:100 and 100:1"),
        (101, "between 1:100 and 100:1"),
        (-2, "between 1:100 and 100:1"),
        ("inf", "between 1:100 and 100:1"),
    ],
)
def test_parse_aspect_refuses(value, message):
    with pytest.raises(ValueError, match="aspect_ratio") as info:
        parse_aspect(value)
    assert message in str(info.value)


@pytest.mark.parametrize("op", ["crop", "pad"])
def test_bad_aspect_ratio_names_the_step_and_field(op):
    loc, msg = only_error(body(steps=[CROP, {"op": op, "aspect_ratio": "wide"}]))
    assert loc == ("steps", 1, op, "aspect_ratio")
    assert "write it as 'W:H'" in msg


# --- counts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, MAX_STEPS])
def test_one_to_sixteen_steps_are_accepted(count):
    assert len(PipelineInput.model_validate(body(steps=[CROP] * count)).steps) == count


@pytest.mark.parametrize("count", [0, MAX_STEPS + 1])
def test_no_steps_or_too_many_are_refused(count):
    loc, msg = only_error(body(steps=[CROP] * count))
    assert loc == ("steps",)
    assert f"give 1 to 16 steps, got {count}" in msg


def test_up_to_eight_images_are_accepted_in_order():
    images = {f"img{i}": f"{URL}?{i}" for i in range(MAX_IMAGES)}
    parsed = PipelineInput.model_validate(body(image_url=None, images=images))
    assert parsed.source_name() == "img0"
    assert list(parsed.image_urls()) == list(images)


@pytest.mark.parametrize("count", [0, MAX_IMAGES + 1])
def test_no_images_or_too_many_are_refused(count):
    images = {f"img{i}": URL for i in range(count)}
    loc, msg = only_error(body(image_url=None, images=images))
    assert loc == ("images",)
    assert f"give 1 to 8 images, got {count}" in msg


@pytest.mark.parametrize("name", ["9lives", "_x", "has space", "a" * 33, "dot.ted"])
def test_image_names_must_be_identifiers(name):
    loc, msg = only_error(body(image_url=None, images={name: URL}))
    assert loc == ("images",) and repr(name) in msg


def test_image_urls_must_be_http_or_data():
    loc, msg = only_error(body(image_url=None, images={"main": URL, "logo": "ftp://x/y.png"}))
    assert loc == ("images",) and "images.logo must be an http(s) URL or a data: URI" in msg
    loc, msg = only_error(body(image_url="file:///etc/passwd"))
    assert loc == ("image_url",) and "image_url must be" in msg


# --- references -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"op": "composite", "image": "backdrop"}, "image"),
        ({"op": "overlay", "image": "logo"}, "image"),
        ({"op": "effects", "enable_dissolve": True, "dissolve_image": "other"}, "dissolve_image"),
    ],
)
def test_a_missing_reference_names_step_op_and_field(fields, field):
    data = body(image_url=None, images={"main": URL, "spare": OTHER}, steps=[CROP, CROP, fields])
    loc, msg = only_error(data)
    assert loc == ("steps", 2, fields["op"], field)
    assert f"no reference image named {fields[field]!r}" in msg
    assert "(given: main, spare)" in msg


def test_a_reference_with_image_url_says_to_use_images():
    _, msg = only_error(body(steps=[{"op": "overlay", "image": "logo"}]))
    assert "(given: none (give them in images))" in msg


def test_given_references_are_accepted():
    images = {"main": URL, "logo": OTHER, "bg": OTHER}
    steps = [
        {"op": "composite", "image": "bg"},
        {"op": "overlay", "image": "logo"},
        {"op": "effects", "enable_dissolve": True, "dissolve_image": "logo"},
    ]
    parsed = PipelineInput.model_validate(body(image_url=None, images=images, steps=steps))
    assert [s.references() for s in parsed.steps] == [["bg"], ["logo"], ["logo"]]


def test_dissolve_image_is_only_a_reference_when_dissolve_is_on():
    data = body(image_url=None, images={"main": URL}, steps=[{"op": "effects", "dissolve_image": "nope"}])
    assert PipelineInput.model_validate(data).steps[0].references() == []


# --- fal's dissolve_image_url ---------------------------------------------------------------------


def test_dissolve_image_url_is_lifted_into_images_with_image_url():
    fal = {"op": "effects", "enable_dissolve": True, "dissolve_factor": 0.3, "dissolve_image_url": OTHER}
    parsed = PipelineInput.model_validate(body(steps=[CROP, fal]))
    assert parsed.image_url is None
    assert parsed.images == {"image": URL, "step1_dissolve": OTHER}
    assert parsed.source_name() == "image"
    effects = parsed.steps[1]
    assert effects.dissolve_image == "step1_dissolve"
    assert effects.references() == ["step1_dissolve"]
    assert [name for name, _ in effects.chain()] == ["dissolve"]


def test_dissolve_image_url_joins_given_images_after_them():
    fal = {"op": "effects", "enable_dissolve": True, "dissolve_image_url": OTHER}
    parsed = PipelineInput.model_validate(body(image_url=None, images={"main": URL}, steps=[fal, fal]))
    assert list(parsed.images) == ["main", "step0_dissolve", "step1_dissolve"]
    assert parsed.source_name() == "main"
    assert [s.dissolve_image for s in parsed.steps] == ["step0_dissolve", "step1_dissolve"]


def test_empty_dissolve_image_url_lifts_nothing():
    parsed = PipelineInput.model_validate(body(steps=[{"op": "effects", "dissolve_image_url": ""}]))
    assert parsed.image_url == URL and parsed.images is None
    assert parsed.steps[0].dissolve_image is None


def test_a_lifted_dissolve_url_is_checked_like_any_image():
    fal = {"op": "effects", "enable_dissolve": True, "dissolve_image_url": "ftp://x/y.png"}
    loc, msg = only_error(body(steps=[fal]))
    assert loc == ("images",) and "images.step0_dissolve must be an http(s) URL" in msg


def test_lifted_dissolve_urls_count_towards_the_image_limit():
    images = {f"img{i}": URL for i in range(MAX_IMAGES)}
    fal = {"op": "effects", "enable_dissolve": True, "dissolve_image_url": OTHER}
    loc, msg = only_error(body(image_url=None, images=images, steps=[fal]))
    assert loc == ("images",) and "got 9" in msg


def test_dissolve_without_an_image_is_refused_up_front():
    errors(body(steps=[{"op": "effects", "enable_dissolve": True}]))


# --- which inputs go together ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"images": {"main": URL}}, "give image_url or images"),
        ({"image_url": None}, "give image_url or images"),
        ({"recipe": "square"}, "give steps or recipe, not both"),
        ({"steps": None}, "give steps or recipe, not both"),
        ({"overrides": {"0": {"width": 3}}}, "overrides change a recipe's steps: give recipe too"),
    ],
)
def test_inputs_that_go_together(fields, message):
    loc, msg = only_error(body(**fields))
    assert loc == ()
    assert message in msg


def test_recipe_with_overrides_is_accepted_and_keys_become_indexes():
    parsed = PipelineInput.model_validate(
        {"image_url": URL, "recipe": "square", "overrides": {"0": {"width": 800}}}
    )
    assert parsed.steps is None
    assert parsed.overrides == {0: {"width": 800}}


def test_from_recipe_is_set_by_darkroom_only():
    loc, msg = only_error(body(from_recipe={"name": "square", "version": 1}))
    assert loc == ("from_recipe",) and "give recipe instead" in msg
    trusted = PipelineInput.model_validate(
        body(from_recipe={"name": "square", "version": 1}), context={"trusted": True}
    )
    assert trusted.from_recipe == {"name": "square", "version": 1}


@pytest.mark.parametrize(
    ("output", "field"),
    [
        ({"format": "gif"}, "format"),
        ({"quality": 0}, "quality"),
        ({"quality": 101}, "quality"),
        ({"max_bytes": 1023}, "max_bytes"),
    ],
)
def test_output_spec_is_checked(output, field):
    assert only_error(body(output=output))[0] == ("output", field)


def test_output_spec_defaults():
    output = PipelineInput.model_validate(body()).output
    assert (output.format, output.quality, output.max_bytes) == ("png", 90, None)


# --- batch keys -----------------------------------------------------------------------------------


def test_fields_outside_the_key_do_not_split_batches():
    red_pad, green_pad = step(op="pad", top=4, color="red"), step(op="pad", top=4, color="#00ff0080")
    assert red_pad.batch_key() == green_pad.batch_key()
    red = step(op="resize", width=9, height=9, fit="contain", background="red")
    assert red.batch_key() == step(op="resize", width=9, height=9, fit="contain").batch_key()
    assert step(op="pad", top=4).batch_key() != step(op="pad", top=5).batch_key()
    left = step(op="crop", aspect_ratio=1, gravity="left")
    assert step(op="crop", aspect_ratio=1).batch_key() != left.batch_key()


# --- checks with sizes, settings and fonts --------------------------------------------------------


def test_step_sizes_walk_the_steps():
    steps = [step(op="crop", aspect_ratio="1:1"), step(op="resize", width=100), step(op="pad", top=5, left=3)]
    assert list(step_sizes(steps, (400, 300), {})) == [(0, (300, 300)), (1, (100, 100)), (2, (103, 105))]


def test_check_sizes_returns_the_final_size_and_allows_exactly_the_limit():
    steps = [step(op="crop", aspect_ratio="1:1"), step(op="resize", scale=2)]
    assert check_sizes(steps, (400, 300), {}, max_pixels=600 * 600) == (600, 600)


def test_check_sizes_refuses_the_step_that_passes_the_limit():
    steps = [step(op="crop", aspect_ratio="1:1"), step(op="resize", scale=4), step(op="resize", width=10)]
    with pytest.raises(InvalidInput) as info:
        check_sizes(steps, (400, 300), {}, max_pixels=1_000_000)
    message = str(info.value)
    assert message.startswith("steps.1.resize: makes a 1200x1200 image")
    assert "max_output_pixels (1,000,000)" in message
    assert info.value.code == "invalid_input"


def test_check_sizes_counts_pad_margins():
    with pytest.raises(InvalidInput, match=r"^steps\.0\.pad: makes a 101x100 image"):
        check_sizes([step(op="pad", left=1)], (100, 100), {}, max_pixels=100 * 100)


@pytest.mark.parametrize(
    "crop",
    [
        {"x": 10, "width": 300, "height": 10},  # past the right edge
        {"y": 295, "width": 10, "height": 10},  # past the bottom
        {"width": 301, "height": 1},
    ],
)
def test_a_crop_box_outside_the_image_names_the_step_and_width(crop):
    steps = [step(op="crop", aspect_ratio="1:1"), step(op="crop", **crop)]
    with pytest.raises(InvalidInput) as info:
        check_sizes(steps, (400, 300), {}, max_pixels=10**9)
    message = str(info.value)
    assert message.startswith("steps.1.crop.width: the box ")
    assert "does not fit inside the 300x300 image" in message


def test_a_fraction_crop_at_the_far_edge_is_refused():
    with pytest.raises(InvalidInput, match=r"^steps\.0\.crop\.width: the box 0x"):
        check_sizes([step(op="crop", x=1, width=0.5, height=0.5, units="fraction")], (40, 30), {}, 10**9)


def settings(**fields: Any) -> Settings:
    return Settings(**fields)


def test_check_static_refuses_a_size_given_outright():
    data = body(steps=[CROP, {"op": "resize", "width": 5000, "height": 5000}])
    with pytest.raises(InvalidInput) as info:
        check_static(PipelineInput.model_validate(data), settings(max_output_pixels=1_000_000))
    assert str(info.value).startswith("steps.1.resize: asks for 5000x5000, more than max_output_pixels")
    with pytest.raises(InvalidInput, match=r"^steps\.0\.pad: asks for 2000x1000"):
        data = body(steps=[{"op": "pad", "width": 2000, "height": 1000}])
        check_static(PipelineInput.model_validate(data), settings(max_output_pixels=1_000_000))


def test_check_static_leaves_sizes_it_cannot_know_to_the_worker():
    steps = [{"op": "resize", "width": 5000}, {"op": "resize", "scale": 16}, {"op": "pad", "top": 9000}]
    data = PipelineInput.model_validate(body(steps=steps, output={"format": "avif"}))
    assert check_static(data, settings(max_output_pixels=1_000_000)) is None


def test_check_fonts_names_the_step():
    steps = [step(op="crop", aspect_ratio=1), step(op="overlay", text="hi", font="Comic Sans")]
    with pytest.raises(InvalidInput) as info:
        check_fonts(steps, None)
    message = str(info.value)
    assert message.startswith("steps.1.overlay.font: unknown font 'Comic Sans'; available: dejavu-sans")
    assert check_fonts([step(op="overlay", text="hi", font="dejavu-sans-bold")], None) is None
    # a watermark image has no font to check
    assert check_fonts([step(op="overlay", image="logo", font="Comic Sans")], None) is None


@pytest.mark.parametrize("images", [-2099115, "photo", ["a"], True])
def test_images_that_are_not_a_map_are_a_validation_error(images):
    body = {"images": images, "steps": [{"op": "effects", "enable_dissolve": True,
                                         "dissolve_image_url": "https://example.com/b.png"}]}
    with pytest.raises(ValidationError) as info:
        PipelineInput.model_validate(body)
    assert any(e["loc"][:1] == ("images",) for e in info.value.errors())
