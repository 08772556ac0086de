"""JSON documents too big to build in memory, written out a piece at a time (issue 26).

`stream_json(doc)` yields the same text as `current_app.json.dumps(doc) + "\\n"` (what
`rendering.json_response` sends), where any value of `doc` may be an iterator: it is written as
an array whose items are read as they come, so memory stays flat in the document's size. Long
lists are written item by item too, and a dict holding either is written key by key (sorted as
the app's encoder sorts them); every other value is encoded whole by the app's encoder, a batch
of values at a time, on `portal.offload`'s thread so the event loop keeps serving
(web/rendering.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import current_app

from portal import offload

# Values encoded per trip to the offload thread: about 50 KB of answers, and a bound on the
# memory a stream holds (a receipt, the biggest value of an evidence file, lists one
# execution's answers: 32 of them are 1.6 MB for executions of 100 answers).
BATCH = 32


class _Value:
    """A value the app's encoder writes whole."""

    __slots__ = ("value",)

    def __init__(self, value: object):
        self.value = value


def stream_json(doc: object) -> Iterator[str]:
    """Yields the JSON text of `doc` (and a final newline) in pieces; see the module docstring."""
    dumps = current_app.json.dumps
    layout = _layout(dumps)
    if layout is None:
        # An encoder configured otherwise (indented, say) is matched by encoding it whole.
        yield offload.run(lambda: dumps(_materialized(doc)) + "\n")
        return
    pending: list = []
    values = 0
    for part in _parts(doc, *layout):
        pending.append(part)
        values += isinstance(part, _Value)
        if values >= BATCH:
            yield offload.run(_encode, pending, dumps)
            pending, values = [], 0
    pending.append("\n")
    yield offload.run(_encode, pending, dumps)


def _layout(dumps: Callable[[object], str]) -> tuple[str, str, bool] | None:
    """The encoder's item and key separators and whether it sorts keys, or None for a layout
    this module does not write (indentation)."""
    probe = dumps({"b": 0, "a": [1, 2]})
    for items, keys in ((", ", ": "), (",", ":")):
        a, b = f'"a"{keys}[1{items}2]', f'"b"{keys}0'
        if probe in (f"{{{a}{items}{b}}}", f"{{{b}{items}{a}}}"):
            return items, keys, probe.startswith('{"a"')
    return None


def _parts(value: object, items: str, keys: str, sort: bool) -> Iterator[str | _Value]:
    if type(value) in _PLAIN_TYPES:
        yield _Value(value)
    elif _streamed(value):
        yield "["
        for n, item in enumerate(value):
            if n:
                yield items
            yield from _parts(item, items, keys, sort)
        yield "]"
    elif isinstance(value, dict) and _holds_iterator(value):
        yield "{"
        names = sorted(value) if sort else list(value)
        for n, name in enumerate(names):
            if n:
                yield items
            yield _Value(name)
            yield keys
            yield from _parts(value[name], items, keys, sort)
        yield "}"
    else:
        yield _Value(value)


# Values that are never streamed, told apart before the costlier checks: every answer of a big
# file passes here.
_PLAIN = (str, int, float, bool, type(None))
_PLAIN_TYPES = frozenset(_PLAIN)


def _streamed(value: object) -> bool:
    """An iterator, or a list long enough that encoding it whole would be a big piece."""
    if type(value) is list:
        return len(value) > BATCH
    return isinstance(value, Iterator)


def _holds_iterator(value: dict) -> bool:
    for item in value.values():
        kind = type(item)
        if kind in _PLAIN_TYPES:
            continue
        if kind is dict:
            if _holds_iterator(item):
                return True
        elif _streamed(item):
            return True
    return False


def _encode(parts: list, dumps: Callable[[object], str]) -> str:
    return "".join(dumps(p.value) if isinstance(p, _Value) else p for p in parts)


def _materialized(value: object) -> object:
    if isinstance(value, Iterator):
        return [_materialized(item) for item in value]
    if isinstance(value, dict):
        return {name: _materialized(item) for name, item in value.items()}
    return value
