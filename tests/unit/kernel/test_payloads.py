"""validate: the one step that turns a payload into its model or into ``invalid_payload``."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.payloads import (
    MAX_ERROR_DETAILS,
    MAX_ERROR_TEXT,
    clip_text,
    validate,
)


class Point(BaseModel):
    x: int
    y: int = Field(ge=0)


def test_a_fitting_payload_comes_back_as_the_model():
    point = validate(Point, {"x": 1, "y": 2}, "invalid point")
    assert isinstance(point, Point) and (point.x, point.y) == (1, 2)


def test_a_bad_payload_is_invalid_payload_naming_each_field_with_the_given_message():
    with pytest.raises(RealtimeError) as caught:
        validate(Point, {"x": "one", "y": -1}, "invalid point")
    exc = caught.value
    assert exc.code is ErrorCode.INVALID_PAYLOAD and exc.http_status == 400
    assert exc.message == "invalid point"
    assert [d["field"] for d in exc.details] == ["x", "y"]
    assert exc.details[1] == {"field": "y", "type": "greater_than_equal",
                              "message": "Input should be greater than or equal to 0"}
    assert exc.__cause__ is None and exc.__suppress_context__  # the input stays out of logs


def test_a_payload_that_is_not_an_object_is_named_payload():
    with pytest.raises(RealtimeError) as caught:
        validate(Point, [1, 2], "invalid point")
    assert [d["field"] for d in caught.value.details] == ["payload"]


def test_details_are_capped_with_a_truncated_marker():
    many = type("Many", (BaseModel,), {"__annotations__": {f"f{i}": int for i in range(30)}})
    with pytest.raises(RealtimeError) as caught:
        validate(many, {}, "invalid")
    details = caught.value.details
    assert len(details) == MAX_ERROR_DETAILS + 1
    assert details[-1] == {"field": "*", "type": "truncated", "truncated": True,
                           "message": f"{30 - MAX_ERROR_DETAILS} more errors not shown"}


def test_long_field_names_and_messages_are_clipped():
    assert clip_text("a" * MAX_ERROR_TEXT) == "a" * MAX_ERROR_TEXT
    clipped = clip_text("a" * (MAX_ERROR_TEXT + 50))
    assert len(clipped) == MAX_ERROR_TEXT and clipped.endswith("…")
