"""Fuzz every operation of the server's OpenAPI document (schemathesis,
schema-valid and schema-violating cases) against the live server: never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from .conftest import bearer


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_cause_a_server_error(live, keys, mode):
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    fuzzed = 0
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(headers=bearer(keys["admin"]), checks=[not_a_server_error])

        try:
            fuzz()
            fuzzed += 1
        except Unsatisfiable:  # nothing to violate (no parameters, no body)
            assert mode == GenerationMode.NEGATIVE
    assert fuzzed >= 10
