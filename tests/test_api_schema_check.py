"""The request-body checker reads the published JSON Schema as a JSON Schema would."""

from __future__ import annotations

from typing import Any

import pytest

from engine.api.errors import ApiError
from engine.api.schedule_body import NAME_PATTERN, SCHEDULE_BODY
from engine.api.schema_check import SUPPORTED, check


def test_integers_are_json_schema_integers() -> None:
    schema = {"type": "integer", "minimum": 1, "maximum": 9}
    assert check(schema, 5.0) == 5 and isinstance(check(schema, 5.0), int)
    for bad in (True, 5.5, "5", None, 10):
        with pytest.raises(ApiError):
            check(schema, bad, "n")


def test_a_trailing_dollar_anchors_at_the_very_end_as_in_ecma_262() -> None:
    schema = {"type": "string", "pattern": NAME_PATTERN}
    assert check(schema, "serpram-sync") == "serpram-sync"
    with pytest.raises(ApiError, match="invalid format"):
        check(schema, "serpram-sync\n", "queue")


def test_errors_name_the_dotted_field() -> None:
    body = {"queue": "q", "cron": "* * * * *", "job": {"backoff": {"type": "linear"}}}
    with pytest.raises(ApiError) as caught:
        check(SCHEDULE_BODY, body)
    assert caught.value.field == "job.backoff.type"


def _keywords(schema: dict[str, Any]) -> set[str]:
    found = set(schema)
    for sub in (*schema.get("properties", {}).values(), *schema.get("oneOf", ())):
        found |= _keywords(sub)
    return found


def test_every_keyword_of_the_schema_is_one_the_checker_reads() -> None:
    with pytest.raises(KeyError, match="format"):
        check({"type": "string", "format": "date-time"}, "x")
    assert _keywords(SCHEDULE_BODY) <= SUPPORTED
    check(SCHEDULE_BODY, SCHEDULE_BODY["example"])  # the published example is valid
