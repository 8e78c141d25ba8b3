"""A property-based fuzz of the API against its own OpenAPI spec (schemathesis): no 5xx, no undocumented status.

Schemathesis generates requests from ``/openapi.json`` (valid ones and, in
negative mode, invalid ones: wrong types, missing fields, random bytes as
images) and checks each answer: never a server error, a status code the spec
lists for the operation, and a body and content type matching the spec.
The run is bounded: a fixed number of examples per operation, without
Hypothesis' example database, so that it takes seconds and is the same on
every run.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402  (after the skip: schemathesis brings hypothesis)
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

TOKEN = "fuzz-token-123"


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
BOUNDED = settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def operations(cnn_model):
    """The operations of a token-protected server of the tiny CNN bundle (small limits, so that 413 is reachable)."""
    from brainmri.serve.app import create_app
    from brainmri.serve.settings import ServeSettings

    app = create_app(cnn_model, ServeSettings(token=TOKEN, max_upload_mb=0.01, max_files=2))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return {op.label: op for op in (result.ok() for result in schema.get_all_operations())}


def test_the_spec_lists_the_three_operations(operations):
    assert sorted(operations) == ["GET /health", "GET /model", "POST /predict"]


@pytest.mark.parametrize("label", ["GET /health", "GET /model", "POST /predict"])
@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("authorised", [True, False])
def test_fuzzed_requests_get_documented_answers_and_no_server_error(
    label, mode, authorised, operations, one_torch_thread
):
    # schemathesis' own pytest integration (from_fixture) does not run under pytest 9; its strategies do.
    headers = {"Authorization": f"Bearer {TOKEN}"} if authorised else {}
    statuses = []

    @BOUNDED
    @given(case=operations[label].as_strategy(GenerationMode(mode)))
    def fuzz(case):
        statuses.append(case.call_and_validate(headers=headers, checks=CHECKS).status_code)

    fuzz()
    assert statuses and (set(statuses) == {401}) != authorised
