"""The batched append script's call, encoded as RESP bytes by hand.

The worker sends one batched call per tick with an event per token. Packing
each event's argument list with `hiredis.pack_command` cost more than half
of the writer's own work per token; a plain delta's eight arguments are
mostly the same for every delta of a generation (count, id, writer id), so
that part is encoded once per generation run (`delta_prefix`) and the rest
with one bytes format (`encode_delta`). Other events go through hiredis.
The bytes are exactly what `hiredis.pack_command` makes of
`EventLog.batch_arguments` (tests/unit/test_appendwire.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import orjson

from spool.events import DELTA

DELTA_ARGC = 8  # arguments of a plain delta in the compact form (log.batch_arguments)


def _bulk(value: str) -> bytes:
    raw = value.encode("utf-8")
    return b"$%d\r\n%b\r\n" % (len(raw), raw)


# prefix, number, event, data, text, terminal flag "0" (see encode_delta)
_DELTA_REST = b"%b$%d\r\n%b\r\n" + _bulk(DELTA) + b"$%d\r\n%b\r\n$%d\r\n%b\r\n" + _bulk("0")


def delta_prefix(gen_id: str, writer_id: str) -> bytes:
    """The first three arguments of every plain delta of this writer id."""
    return _bulk(str(DELTA_ARGC - 1)) + _bulk(gen_id) + _bulk(writer_id)


def encode_delta(prefix: bytes, number: int, text: str) -> bytes:
    """A plain delta (`{"text": text}`, no record fields) in the compact form."""
    seq = b"%d" % number
    data = orjson.dumps({"text": text})
    raw = text.encode("utf-8")
    return _DELTA_REST % (prefix, len(seq), seq, len(data), data, len(raw), raw)


def encode_arguments(args: Sequence[Any]) -> bytes:
    """Any event's compact arguments (`EventLog.batch_arguments`) as RESP bulk strings."""
    packed: bytes = hiredis.pack_command(tuple(args))
    return packed[packed.index(b"\r\n") + 2:]  # without the command's own `*N` header


def pack_call(head: Sequence[Any], events: Sequence[tuple[int, bytes]]) -> bytes:
    """One command: `head` (e.g. EVALSHA, sha, 0, constants), then the encoded
    events, given as (argument count, bytes)."""
    argc = len(head) + sum(count for count, _ in events)
    return b"".join((b"*%d\r\n" % argc, encode_arguments(head), *(raw for _, raw in events)))
