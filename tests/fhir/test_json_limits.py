"""The body limits read from the raw text (cds.fhir.json_limits) give the answers of a walk over the parsed
value: both ways of reading the text's shape, on JSON whose strings hold brackets, quotes and escapes."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.fhir.json_limits import (
    _ESCAPE,
    _NOT_STRUCTURE,
    _STRUCTURE,
    limit_violation,
    raw_limit_violation,
    shape_depth_within_fold,
    shape_depth_within_scan,
)

SHAPE_READERS = [shape_depth_within_scan, shape_depth_within_fold]

# Strings full of what could confuse a reader of the text: brackets, quotes, backslashes, non-ASCII.
tricky_text = st.text(alphabet=st.sampled_from(list('ab {}[]"\\:,é𝄞')), max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(tricky_text, children, max_size=4),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def shape(value: Any, *, pretty: bool = False) -> bytes:
    text = json.dumps(value, indent=1, ensure_ascii=False).encode() if pretty else orjson.dumps(value)
    return _ESCAPE.sub(b"x", text).translate(_STRUCTURE, _NOT_STRUCTURE)  # as raw_limit_violation does


@pytest.mark.parametrize("reader", SHAPE_READERS, ids=lambda f: f.__name__)
@settings(max_examples=300, deadline=None)
@given(value=json_values, pretty=st.booleans())
def test_the_shape_of_the_text_nests_as_deep_as_the_value(reader: Any, value: Any, pretty: bool) -> None:
    levels = depth(value)
    text_shape = shape(value, pretty=pretty)
    for limit in {max(levels - 1, 0), levels, levels + 1}:
        assert reader(text_shape, limit) is (levels <= limit)


@pytest.mark.parametrize("reader", SHAPE_READERS, ids=lambda f: f.__name__)
def test_brackets_inside_strings_never_hide_or_add_depth(reader: Any) -> None:
    hiding = {"a": "]]]]", "b": [[[["x"]]]]}  # closing brackets in a string must not lower the count
    assert reader(shape(hiding), 4) is False
    assert reader(shape(hiding), 5) is True
    adding = {"display": "Neutrophils [#/volume] in Blood {x}"}  # as LOINC display names hold them
    assert reader(shape(adding), 1) is True


@pytest.mark.parametrize("reader", SHAPE_READERS, ids=lambda f: f.__name__)
def test_nesting_far_past_the_limit_is_refused(reader: Any) -> None:
    assert reader(b"{" * 100_000 + b"}" * 100_000, 64) is False
    assert reader(b"{" * 64 + b"}" * 64, 64) is True


@settings(max_examples=300, deadline=None)
@given(
    value=json_values, limit=st.integers(min_value=1, max_value=6), max_string=st.integers(min_value=2, max_value=14)
)
def test_the_raw_check_answers_as_the_walk_over_the_value(value: Any, limit: int, max_string: int) -> None:
    raw = orjson.dumps(value)
    expected = limit_violation(value, max_depth=limit, max_string_length=max_string)
    found = raw_limit_violation(raw, lambda: orjson.loads(raw), max_depth=limit, max_string_length=max_string)
    assert (found is None) is (expected is None)


def test_the_build_reads_the_shape_its_own_way() -> None:
    import cds
    import cds.fhir.json_limits as limits

    expected = shape_depth_within_scan if cds.build() == "compiled" else shape_depth_within_fold
    assert limits._shape_depth_within is expected
