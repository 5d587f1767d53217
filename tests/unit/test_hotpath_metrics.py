"""count_submitted keeps one labelled child per app (darkroom/metrics.py): the same series as labels()."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY, generate_latest

from darkroom.metrics import JOBS_SUBMITTED, count_submitted

pytestmark = pytest.mark.timeout(30)


def submitted(app_id: str) -> float | None:
    return REGISTRY.get_sample_value("darkroom_jobs_submitted_total", {"app": app_id})


def test_counts_into_the_series_labels_gives():
    app_id = f"test/{uuid.uuid4()}"
    assert submitted(app_id) is None
    count_submitted(app_id)
    count_submitted(app_id)
    assert submitted(app_id) == 2.0
    JOBS_SUBMITTED.labels(app_id).inc()  # the same child either way
    count_submitted(app_id)
    assert submitted(app_id) == 4.0
    assert f'darkroom_jobs_submitted_total{{app="{app_id}"}} 4.0' in generate_latest(REGISTRY).decode()
