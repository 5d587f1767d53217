"""darkroom.broker's messages from a cached template and ids from os.urandom: byte for byte what the
json.dumps of the envelope with uuid4 ids gave (tests/integration/test_broker.py checks them against
Celery's own)."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkroom import broker

pytestmark = pytest.mark.timeout(60)

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


# Copied from darkroom/broker.py at d8d3e4b (task_message before the template), with its two
# str(uuid.uuid4()) taken as arguments: the reference.
def reference_message(task: str, request_id: str, queue: str, priority: int, task_id: str, tag: str) -> str:
    args = [request_id]
    body = json.dumps([args, {}, broker._EMBED]).encode()
    headers = {
        "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None,
        "expires": None, "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
        "root_id": task_id, "parent_id": None, "argsrepr": repr(args), "kwargsrepr": "{}",
        "origin": broker._ORIGIN, "ignore_result": None, "replaced_task_nesting": 0,
        "stamped_headers": None, "stamps": {},
    }
    properties = {
        "correlation_id": task_id, "reply_to": None, "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": priority, "body_encoding": "base64", "delivery_tag": tag,
    }
    envelope = {
        "body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
        "content-type": "application/json", "headers": headers, "properties": properties,
    }
    return json.dumps(envelope)


ROUTES = [(broker.RUN_JOB_TASK, broker.EFFECTS_QUEUE, 0), (broker.RUN_JOB_TASK, broker.EFFECTS_QUEUE, 9),
          (broker.WEBHOOK_TASK, broker.WEBHOOK_QUEUE, 0)]
REQUEST_IDS = [str(uuid.uuid4()), "", "a\"b\\c", "caf\u00e9 \ud83d\ude00", "\x00\n\t\u2028", "'quoted'",
               "\ud800", "x" * 500, "\\u0000body\\u0000"]


@pytest.mark.parametrize(("task", "queue", "priority"), ROUTES)
@pytest.mark.parametrize("request_id", REQUEST_IDS)
def test_render_is_the_reference_byte_for_byte(task, queue, priority, request_id):
    task_id, tag = str(uuid.uuid4()), str(uuid.uuid4())
    got = broker.render_task_message(task, request_id, queue, priority, task_id, tag)
    assert got == reference_message(task, request_id, queue, priority, task_id, tag)
    assert got == json.dumps(broker.envelope(task, request_id, queue, priority, task_id, tag))


@settings(max_examples=200, deadline=None)
@given(request_id=st.text(max_size=40))
def test_any_request_id(request_id):
    for task, queue, priority in ROUTES:
        got = broker.render_task_message(task, request_id, queue, priority, "i", "t")
        assert got == reference_message(task, request_id, queue, priority, "i", "t")


@pytest.mark.parametrize(("make", "route"), [
    (lambda rid: broker.job_message(rid, "normal"), ROUTES[0]),
    (lambda rid: broker.job_message(rid, "low"), ROUTES[1]),
    (broker.webhook_message, ROUTES[2]),
])
def test_messages_are_the_reference_with_fresh_uuid4_ids(make, route):
    request_id = str(uuid.uuid4())
    text = make(request_id)
    message = json.loads(text)
    task_id, tag = message["headers"]["id"], message["properties"]["delivery_tag"]
    assert UUID4.fullmatch(task_id) and UUID4.fullmatch(tag) and task_id != tag
    task, queue, priority = route
    assert text == reference_message(task, request_id, queue, priority, task_id, tag)
    assert json.loads(base64.b64decode(message["body"])) == [[request_id], {}, broker._EMBED]


def test_a_new_origin_is_a_new_template(monkeypatch):
    monkeypatch.setattr(broker, "_ORIGIN", "gen1@elsewhere")
    message = json.loads(broker.job_message("r", "normal"))
    assert message["headers"]["origin"] == "gen1@elsewhere"


def test_ids_are_uuid4_strings():
    seen = set()
    ones, zeros = 0, ~0
    for _ in range(2000):
        for text in broker._uuid4_pair():
            assert UUID4.fullmatch(text)
            parsed = uuid.UUID(text)
            assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
            seen.add(text)
            ones, zeros = ones | parsed.int, zeros & parsed.int
    assert len(seen) == 4000
    fixed = (0xF000 << 64) | (0xC000 << 48)  # the version and variant bits: the same in every uuid4
    assert ones | fixed == (1 << 128) - 1 and zeros & ~fixed == 0  # every other bit varies
