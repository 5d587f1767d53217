"""Schemathesis fuzzes every operation of the OpenAPI schema against a running API: no 5xx, and every
documented response conforms to its schema and content type.

The API runs on a Redis database no worker consumes (fuzz jobs never reach a worker), with keys
optional (loopback bind) and a 0.3 s synchronous-run timeout: a sync run that times out answers 504
``request_timeout`` by design, the one 5xx accepted here. ``SCHEMATHESIS_MAX_EXAMPLES`` (default 10)
sets the examples per operation. ``loopback_only`` fails the test if anything — the API included,
it runs in this process — tries to reach a non-loopback address.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from darkroom.cli.embedded import free_port
from tests.support.harness import make_settings
from tests.support.servers import running_api

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))
SYNC_RUN_PATHS = ("/run/", "/v1/prediction/run")
CASES: list[str] = []

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def fuzz_url(redis_url, s3_endpoint, request) -> Iterator[str]:
    cfg = make_settings(
        redis_url.rsplit("/", 1)[0] + "/13", s3_endpoint, free_port(),
        sync_run_timeout_s=0.3, sse_keepalive_s=0.1, fetch_allow_hosts=[], max_input_bytes=2_000_000,
    )
    with running_api(cfg) as url:
        yield url
    operations = len({c.rsplit(" ", 1)[0] for c in CASES})
    codes = dict(sorted(Counter(c.rsplit(" ", 1)[1] for c in CASES).items()))
    line = (f"schemathesis: {len(CASES)} cases over {operations} operations (up to {MAX_EXAMPLES} each); "
            f"statuses {codes}")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{line}")


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every documented operation, read from the app without serving it."""
    from api.app import create_app
    from darkroom.settings import Settings

    paths = create_app(Settings(redis_url="redis://127.0.0.1:1/0")).openapi()["paths"]
    return [(m.upper(), path) for path, item in paths.items() for m in item if m != "parameters"]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_url):
    return schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json")


def _sync_run_timed_out(case, response) -> bool:
    if not case.path.startswith(SYNC_RUN_PATHS) or response.status_code != 504:
        return False
    body = response.json()
    return body.get("error_type") == "request_timeout" or "did not complete" in str(body.get("error", ""))


def _check(case) -> None:
    response = case.call(timeout=10)
    CASES.append(f"{case.method} {case.path} {response.status_code}")
    checks = [response_schema_conformance, content_type_conformance]
    if not _sync_run_timed_out(case, response):
        checks.append(not_a_server_error)
    case.validate_response(response, checks=checks)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_to_its_schema(fuzz_schema, loopback_only, method, path):
    operation = fuzz_schema[path][method]
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=strategy)
    def fuzz(case) -> None:
        _check(case)

    fuzz()
