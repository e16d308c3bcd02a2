"""Property-based: schemathesis generates requests (valid and invalid) from the OpenAPI schema
for every /api/v1 operation and runs them in process against the app on a seeded SQLite
store. No answer may be a server error, and every answer must match the schema (status codes,
content types, bodies); anonymous calls must be refused. Bounded examples: well under 60 s."""

from __future__ import annotations

import asyncio
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gateway.users import Role
from tests.gateway.http.conftest import build_site

EXAMPLES = 25  # per operation


def test_api_schema_holds_under_generated_requests(tmp_path: Path) -> None:
    built = asyncio.run(build_site(f"sqlite:///{tmp_path}/fuzz.db"))
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", built.app).include(
            path_regex=r"^/api/v1/"
        )
        # The stream never ends by design; tests/gateway/http/test_stream.py covers it.
        schema = schema.exclude(path_regex=r"/stream$")
        auth = {"Authorization": f"Bearer {built.tokens[Role.ADMIN]}"}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 20
        for operation in operations:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    headers=auth,
                    additional_checks=[not_a_server_error],
                    # Rules the schema cannot state answer 422 by design: 'from' before
                    # 'to', instants within 2000-2200, a responder or resident that exists.
                    excluded_checks=[positive_data_acceptance],
                )

            check()
    finally:
        asyncio.run(built.close())
