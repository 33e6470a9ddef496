"""How deep a JSON document may nest, measured without recursion.

Python's `json`, pydantic and any recursive walk spend a stack frame per level of arrays and
objects: a document nested a few hundred levels deep exhausts the interpreter's stack (a
`RecursionError`, hence a 500), and one nested deeper can take the error handling down with
it. So a JSON request body is measured on its raw bytes before anything parses it, and a JSON
value that a job hands over (result, checkpoint, service info, question) is measured before it
is encoded. No sensible document comes near the limit; every client's parser copes with it.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

#: The deepest nesting of arrays and objects accepted in a request body or a job's JSON value.
#: `[]` and `{}` are 1 level, `{"params": {"a": []}}` is 3.
MAX_JSON_DEPTH = 64

# A JSON string, escapes included (an unrolled loop: no backtracking, no recursion).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# Everything but brackets goes; what is left is mapped to +1 / -1 (0xFF read as a signed byte).
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def text_depth(raw: bytes | str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets in strings ignored).

    Linear and at C speed (a regex, a translation and an `accumulate`), so that it can run on
    every body before the parser does. Text that is not JSON gets a number all the same; the
    parser refuses it afterwards.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if not any(b in data for b in (b"[", b"{")):
        return 0
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    steps = memoryview(brackets.translate(_STEPS)).cast("b")
    return max(0, max(itertools.accumulate(steps), default=0))


def value_depth(value: Any, cap: int = MAX_JSON_DEPTH + 1) -> int:
    """The deepest nesting of lists, tuples and dicts in `value`, counted up to `cap`.

    Iterative, and it stops at `cap`: a structure that contains itself is merely "too deep".
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest >= cap:
                return cap
        stack.extend((child, depth) for child in children if isinstance(child, dict | list | tuple))
    return deepest


def too_deep(value: Any) -> bool:
    """Whether `value` nests deeper than `MAX_JSON_DEPTH`."""
    return value_depth(value) > MAX_JSON_DEPTH


def too_deep_message(what: str) -> str:
    return f"{what} nests arrays and objects deeper than the limit of {MAX_JSON_DEPTH} levels"
