"""The nesting and string-length limits of a JSON body, settled from its raw bytes where they can be.

Every request body is checked against ``max_json_depth`` and ``max_string_length`` (docs/security.md)
before anything walks it. The parsed value is walked only when the text does not settle the answer: the
nesting of the text bounds the nesting of the value, and a string of the value is no longer than the run
of bytes without a quote that holds it in the text.

The text's nesting is read from its *shape*: escape sequences out, every byte but quotes and brackets
deleted, ``[ ]`` folded onto ``{ }`` (one ``bytes.translate``, at C speed). The shape is then read in one
of two ways, each exact, chosen by the build (docs/architecture.md, "Two builds of one source"): the
compiled build scans it byte by byte with machine integers (:func:`shape_depth_within_scan`, about a
fifth of the instructions of the other way at 1,000 resources); pure Python, where such a loop would be
slow, removes the strings and then one innermost level per ``bytes.replace`` pass
(:func:`shape_depth_within_fold`). ``tests/fhir/test_json_limits.py`` holds both to the same answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from mypy_extensions import i64

from cds import is_extension

__all__ = ["limit_violation", "raw_limit_violation", "shape_depth_within_fold", "shape_depth_within_scan"]


def limit_violation(value: Any, *, max_depth: int, max_string_length: int, check_strings: bool = True) -> str | None:
    """One iterative pass over parsed JSON (no recursion, so no stack to exhaust): a description of the
    first limit broken - nesting deeper than ``max_depth`` or a string (value or key) longer than
    ``max_string_length`` - or None. ``check_strings=False``: the caller knows that no string can be that
    long (the raw body is not), so only the nesting is checked, visiting containers only."""
    if not check_strings:
        return _depth_violation(value, max_depth)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if len(item) > max_string_length:
                return f"A JSON string is longer than {max_string_length} characters"
        elif isinstance(item, dict):
            if depth > max_depth:
                return f"The JSON nests deeper than {max_depth} levels"
            for key, child in item.items():
                if len(key) > max_string_length:
                    return f"A JSON string is longer than {max_string_length} characters"
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                return f"The JSON nests deeper than {max_depth} levels"
            stack.extend((child, depth + 1) for child in item)
    return None


def _depth_violation(value: Any, max_depth: int) -> str | None:
    """The nesting check of :func:`limit_violation` alone: the same answer, without visiting scalars."""
    if not isinstance(value, dict | list):
        return None
    stack: list[tuple[Any, int]] = [(value, 1)]
    push = stack.append
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"The JSON nests deeper than {max_depth} levels"
        below = depth + 1
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                push((child, below))
    return None


# Escape sequences out (one byte each, so a string's length in bytes still bounds its length in
# characters); for the shape, every byte but brackets and quotes deleted and [ ] folded onto { }.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRUCTURE = bytes.maketrans(b"[]", b"{}")
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_MAX_STRING_BLOCKS = 64
_QUOTE: Final = 34  # "   (Final: a constant in the compiled loop, not a look-up per byte)
_OPEN: Final = 123  # {


def raw_limit_violation(raw: bytes, parsed: Callable[[], Any], *, max_depth: int, max_string_length: int) -> str | None:
    """:func:`limit_violation` of the value ``parsed()`` parsed from the JSON text ``raw``, the same answer,
    mostly without the value: the nesting of the text bounds the nesting of the value (a key given twice
    keeps one value), and a string of the value is no longer than the run of bytes without a quote that
    holds it in the text. Only when the text does not settle it is the value asked for and walked."""
    text = _ESCAPE.sub(b"x", raw) if b"\\" in raw else raw
    check_strings = len(raw) > max_string_length
    if check_strings and not _strings_within(text, max_string_length):
        return limit_violation(parsed(), max_depth=max_depth, max_string_length=max_string_length)
    if _shape_depth_within(text.translate(_STRUCTURE, _NOT_STRUCTURE), max_depth):
        return None
    return limit_violation(
        parsed(), max_depth=max_depth, max_string_length=max_string_length, check_strings=check_strings
    )


def _strings_within(text: bytes, max_string_length: int) -> bool:
    """True when no string in the JSON ``text`` (escapes already replaced by one byte) can be longer than
    ``max_string_length``: every aligned block of half that many bytes holds a quote, so no run without
    one reaches the limit. False means: not settled (too many blocks to look at, or a block without a
    quote)."""
    block = max_string_length // 2
    if len(text) > block * _MAX_STRING_BLOCKS:
        return False
    find = text.find
    return all(find(b'"', start, start + block) != -1 for start in range(0, len(text), block))


def shape_depth_within_scan(shape: bytes, max_depth: i64) -> bool:
    """True when the brackets of ``shape`` (the shape of valid JSON: only quotes and ``{ }``) nest no
    deeper than ``max_depth``, outside the strings. One pass; quotes alternate open and close."""
    depth: i64 = 0
    in_string = False
    size: i64 = len(shape)
    i: i64 = 0
    while i < size:
        byte: i64 = shape[i]
        i += 1
        if byte == _QUOTE:
            in_string = not in_string
        elif in_string:
            continue
        elif byte == _OPEN:
            depth += 1
            if depth > max_depth:
                return False
        else:
            depth -= 1
    return True


def shape_depth_within_fold(shape: bytes, max_depth: int) -> bool:
    """:func:`shape_depth_within_scan`, the same answer, from ``bytes`` methods alone (fast without a
    compiler)."""
    # Strings out: quotes alternate open/close. Removing an adjacent pair removes an empty string or
    # joins two strings with nothing between them; what is left between quotes is string content.
    shape = shape.replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    depth = 0
    while shape:
        if depth >= max_depth:
            return False
        shape = shape.replace(b"{}", b"")  # one pass removes the innermost level, and only that one
        depth += 1
    return True


_shape_depth_within: Callable[[bytes, int], bool] = (
    shape_depth_within_scan if is_extension(__file__) else shape_depth_within_fold
)
