"""JSONB documents: orjson's fast path must store exactly what the standard library's path stores."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from moderation.storage.jsonb import _cleaned, dumps_bytes, dumps_text

LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)  # beyond 64 bits: orjson refuses, the fallback must take over
    | st.floats()  # NaN and infinities included
    | st.text(max_size=8)
)
DOCUMENT = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6) | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=25,
)


def _reference(value: Any) -> Any:
    """What the standard library stores: NaN and infinities as null, keys as strings."""
    return json.loads(json.dumps(_cleaned(value), allow_nan=False))


@settings(max_examples=400, deadline=None)
@given(DOCUMENT)
def test_the_fast_path_stores_what_the_standard_library_stores(value: Any) -> None:
    expected = _reference(value)
    assert json.loads(dumps_text(value)) == expected
    assert json.loads(dumps_bytes(value)) == expected


def test_non_finite_numbers_become_null_and_big_integers_survive() -> None:
    doc = {"z": math.nan, "p": math.inf, "n": -math.inf, 1: "int key", "big": 2**70, "t": (1, 2)}
    assert json.loads(dumps_text(doc)) == {"z": None, "p": None, "n": None, "1": "int key", "big": 2**70, "t": [1, 2]}
    assert dumps_bytes({"a": [1.5, "é"]}) == '{"a":[1.5,"é"]}'.encode()
