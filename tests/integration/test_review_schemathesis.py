"""schemathesis against the review API's own /openapi.json (fetched with a viewer's token, as it is served
behind authentication), each generated request sent as a viewer, a moderator and an admin: no answer is
a 5xx, every status answered is documented for its operation, and bodies and content types match the
document. Valid and invalid data both (schemathesis' positive and negative modes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from moderation.review.app import create_app
from moderation.review.settings import ReviewSettings
from tests.review_data import review_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLES = ("vic", "alice", "ada")  # viewer, moderator, admin of tenant acme
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[Engine, dict[str, str]]]:
    with review_database() as (db, tokens):
        yield db, tokens


def operations(db: Engine, viewer_token: str) -> list[Any]:
    # Short leases so a claim made by one example does not decide the next one's answer for long.
    app = create_app(db, ReviewSettings(lease_seconds=1, lease_max_seconds=2))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Authorization": f"Bearer {viewer_token}"})
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the document itself is broken for this operation
            raise AssertionError(f"invalid OpenAPI operation: {result.err()}")
        found.append(result.ok())
    return found


# schemathesis' pytest plugin (from_fixture) needs pytest < 9 (it reads Function._nodeid), so the strategies
# run under Hypothesis directly: one test per generation mode, every operation in each.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_honours_its_document_for_every_role(
    seeded: tuple[Engine, dict[str, str]], mode: GenerationMode
) -> None:
    db, tokens = seeded
    ops = operations(db, tokens["vic"])
    assert len(ops) >= 10
    unsatisfiable: list[str] = []
    for op in ops:

        @given(case=op.as_strategy(generation_mode=mode))
        # derandomize: the same examples every run, so CI is repeatable; raise max_examples to explore more.
        @settings(
            max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
        )
        def check(case: Any) -> None:
            for name in ROLES:
                case.call_and_validate(headers={"Authorization": f"Bearer {tokens[name]}"}, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            # Nothing to get wrong: no parameters (GET /health, /api/me) or only free strings (a post id).
            assert mode is GenerationMode.NEGATIVE
            unsatisfiable.append(f"{op.method.upper()} {op.path}")
        except Exception as failure:
            failure.add_note(f"operation: {op.method.upper()} {op.path} ({mode})")
            raise
    # The operations with a body or constrained query parameters did get invalid data.
    assert len(ops) - len(unsatisfiable) >= 5, unsatisfiable
