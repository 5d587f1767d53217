"""JobRecord.to_hash's fast path (darkroom/job.py) writes exactly what the pydantic dump wrote: the same
fields, values and order, or it steps aside for the dump."""

from __future__ import annotations

import enum
import json
import math
import time
import uuid
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkroom.apps.post_processing import PostProcessingInput
from darkroom.job import _FAST_FIELDS, JobRecord, _fast_hash, _NoPlainType
from darkroom.status import JobStatus

pytestmark = pytest.mark.timeout(60)


# Copied from darkroom/job.py at d8d3e4b (JobRecord.to_hash before the fast path): the reference.
def reference_hash(job: JobRecord) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in job.model_dump(mode="json").items():
        if value is None:
            continue
        if name in ("input", "result", "error", "metrics"):
            out[name] = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            out[name] = "1" if value else "0"
        else:
            out[name] = str(value)
    return out


def assert_same(job: JobRecord) -> None:
    """Same fields in the same order with the same text (so the JSON the job store sends is the same)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic warns about values of the wrong type; so be it
        try:
            expected = reference_hash(job)
        except Exception as exc:  # noqa: BLE001 - whatever the dump raised, to_hash must raise alike
            with pytest.raises(type(exc)) as err:
                job.to_hash()
            assert str(err.value) == str(exc)
            return
        got = job.to_hash()
    assert list(got.items()) == list(expected.items())


def record(data: dict, **fields) -> JobRecord:
    now = time.time()
    base = dict(id=str(uuid.uuid4()), app_id="fal-ai/post-processing", base_id="fal-ai/post-processing",
                input=data, seed=11, created_at=now, deadline_at=now + 30)
    return JobRecord(**{**base, **fields})


def submitted_input(**body) -> dict:
    return PostProcessingInput.model_validate(
        {"image_url": "https://images.example.com/photo.png", "seed": 11, **body}).model_dump(mode="json")


def nested_lists(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


class Mode(enum.StrEnum):
    SOFT = "soft"


def test_every_field_has_a_fast_path():
    assert all(kind is not _NoPlainType for _name, kind, _write in _FAST_FIELDS)
    assert [name for name, _kind, _write in _FAST_FIELDS] == list(JobRecord.model_fields)


def test_a_submitted_job_takes_the_fast_path_and_writes_the_same():
    job = record(submitted_input(enable_solarize=True, enable_grain=True))
    assert _fast_hash(job) is not None
    assert_same(job)
    assert job.to_hash()["input"] == json.dumps(job.input, separators=(",", ":"))


def test_a_finished_job_with_every_field_set():
    job = record(submitted_input(), owner="key-1", status=JobStatus.COMPLETED, priority="low", seq=7,
                 started_at=1.5, completed_at=2.25, attempts=2, crashes=1, requeued_at=1e9, requeues=3,
                 cancel_requested=True, webhook_url="https://hooks.example.com/x", webhook_style="eachlabs",
                 webhook_secret="s3cr\u00e9t", no_retry=True, result={"images": [{"url": "u", "w": 1.0}]},
                 error={"error_type": "x", "detail": "caf\u00e9 \ud83d\ude00"}, metrics={"ms": 0.1, "n": 2})
    assert _fast_hash(job) is not None
    assert_same(job)


@pytest.mark.parametrize("data", [
    {},
    {"a": -0.0, "b": 1e16, "c": 1e-05, "d": 2**70, "e": -(2**63), "f": 0.1 + 0.2, "g": 5e-324},
    {"nan": math.nan},
    {"inf": [1, {"x": -math.inf}]},
    {"t": (1, 2)},
    {"s": {1, 2}},
    {"b": b"bytes"},
    {"enum": Mode.SOFT, "status": JobStatus.COMPLETED},
    {"nested": {None: 1, True: 2, 3: 4, 1.5: 5}},
    {"uni": "caf\u00e9 \ud83d\ude00 \ud800 \x00\n\"\\"},
    {"deep": nested_lists(40)},
])
def test_inputs_the_fast_path_may_or_may_not_take(data):
    assert_same(record(data))


def test_values_of_another_type_than_their_field():
    job = record(submitted_input())
    job.created_at = 6  # an int in a float field: the dump writes 6.0
    assert _fast_hash(job) is None
    assert_same(job)
    for name, value in [("status", "COMPLETED"), ("seq", True), ("deadline_at", math.inf),
                        ("started_at", math.nan), ("owner", Mode.SOFT), ("metrics", None)]:
        job = record(submitted_input())
        setattr(job, name, value)
        assert_same(job)


def test_a_mutated_input_and_a_circular_one():
    job = record(submitted_input())
    job.input[1] = "not a str key"  # type: ignore[index]
    assert _fast_hash(job) is None
    assert_same(job)
    loop: dict = {}
    loop["self"] = loop
    job = record({})
    job.input["loop"] = loop
    assert_same(job)  # the dump's own error


def test_subclasses_and_unset_fields_take_the_dump():
    class Sub(JobRecord):
        extra: str = "x"

    assert_same(Sub(id="a", app_id="a", base_id="a", input={"k": 1}, created_at=1.0))
    partial = JobRecord.model_construct(id="a", app_id="a", base_id="a", input={}, created_at=1.0)
    del partial.__dict__["owner"]
    assert _fast_hash(partial) is None
    assert_same(partial)


def test_from_hash_round_trip_is_unchanged():
    job = record(submitted_input(enable_vignette=True), result={"images": []}, status=JobStatus.IN_PROGRESS)
    back = JobRecord.from_hash(job.to_hash())
    assert back.to_hash() == job.to_hash() == reference_hash(back)


_keys = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.sampled_from([None, True, False, 1.5]))
_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
                    st.sampled_from([Mode.SOFT, JobStatus.IN_QUEUE]))
_json = st.recursive(_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=4), inner, max_size=4),
    st.dictionaries(_keys, inner, max_size=3)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.text(max_size=6), _json, max_size=8),
       result=st.one_of(st.none(), st.dictionaries(st.text(max_size=4), _json, max_size=3)))
def test_any_input_writes_what_the_dump_wrote(data, result):
    assert_same(record(data, result=result))
