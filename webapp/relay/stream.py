"""The SSE relay: backlog from the log, then live from the hub, merged by seq.

The merge itself lives in `webapp.relay.follow` (shared with the OpenAI facade).
If Redis goes away the response simply ends: the client reconnects and
resumes. A terminal event is never invented here.
"""

from __future__ import annotations

import _socket
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import redis
from flask import Blueprint, Response, current_app, request
from flask.typing import ResponseReturnValue

from spool import logs
from spool.events import DELTA, LogEntry
from spool.ids import is_generation_id
from spool.log import READ_PAGE, dumps
from spool.metrics import RECORDER, STREAMS
from spool.utf16 import split_utf16
from webapp import sse
from webapp.auth import authenticate, authorize_stream
from webapp.errors import ApiError
from webapp.launch import find_generation, owned_generation
from webapp.relay.follow import Quiet, follow_batches
from webapp.relay.hub import HubUnavailable
from webapp.relay.presence import Presence
from webapp.relay.subscription import Direct
from webapp.relay.writes import (
    GRACE_HOLD_BYTES,
    NO_WRITE,
    frame,
    run_bytes,
    send_now,
    wait_out,
    writes,
)
from webapp.services import Services, services

log = logging.getLogger("spool.stream")

bp = Blueprint("stream", __name__)
PRESENCE_EXTENSION = "spool.presence"

# The hub writes a caught-up reader's live events to its socket itself
# (webapp/relay/subscription.py); False sends every event through WSGI.
DIRECT_WRITES = True
MAX_SOCKET_WRAPPERS = 4  # how deep to look for the raw socket under gunicorn's wrappers
MAX_EVENT_ID = 2**53 - 1  # JavaScript's largest exact integer
# What opening a stream reads of the record besides its owner (always read):
# never the request it carries.
OPENING_FIELDS = ("ended", "last_seq", "abandon_after_s")
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _parse_position(raw: str | None, param: str) -> int | None:
    if raw is None:
        return None
    text = raw  # no stripping: " 1", "\xa01" are malformed, not 1 (HTTP already trims OWS)
    if not text.isascii() or not text.isdigit() or len(text) > 16 or int(text) > MAX_EVENT_ID:
        raise ApiError(400, f"{param} must be a non-negative integer", param=param)
    return int(text)


@dataclass(frozen=True)
class ResumePoint:
    """Where a reader starts: after event `after`, or at UTF-16 offset `offset`."""

    after: int
    offset: int | None


def parse_resume() -> ResumePoint:
    """Read Last-Event-ID, ?after= and ?offset= (400 on anything malformed)."""
    header = _parse_position(request.headers.get("Last-Event-ID"), "Last-Event-ID")
    after = _parse_position(request.args.get("after"), "after")
    offset = _parse_position(request.args.get("offset"), "offset")
    # EventSource re-sends the original URL (which may carry ?after= or
    # ?offset=) plus the header, so the header wins over ?offset= and the
    # further of header and ?after= is where the reader really is.
    position = max(header or 0, after or 0)
    if header is not None:
        return ResumePoint(position, None)
    if offset is not None and position:
        raise ApiError(400, "offset cannot be combined with after",
                       param="offset")
    return ResumePoint(position, offset)


@dataclass(frozen=True)
class Opening:
    """What a `?offset=` stream starts with."""

    frames: list[bytes]
    after: int  # the last seq the frames cover
    complete: bool  # the frames already end with the terminal event


def offset_start(svc: Services, gen_id: str, offset: int) -> Opening:
    """One delta with the text after `offset` UTF-16 units, plus the terminal
    event if the log has it already.

    An offset client at the end of a finished generation still gets the
    (empty) delta and the terminal event rather than 204: it has no event id
    to be "past", and this is how it learns the finish reason.
    """
    entries = svc.reader_log.read_all(gen_id)
    text = "".join(orjson.loads(e.data)["text"] for e in entries if e.event == DELTA)
    try:
        _, tail = split_utf16(text, offset)
    except ValueError:
        raise ApiError(400, "offset is past the end of the text", param="offset") from None
    terminal = entries[-1] if entries and entries[-1].terminal else None
    body = entries[:-1] if terminal else entries
    covered = body[-1].seq if body else 0
    frames = [sse.event(dumps({"text": tail}), event_id=covered, name=DELTA)]
    if terminal is not None:
        frames.append(frame(terminal))
    return Opening(frames, covered, terminal is not None)


def presence(svc: Services) -> Presence:
    """This app's reader registry (created on first use, with the app's clients)."""
    found = current_app.extensions.get(PRESENCE_EXTENSION)
    if found is None:
        found = Presence(svc.redis, svc.keys, svc.generations)
        current_app.extensions[PRESENCE_EXTENSION] = found
    return found


@bp.before_app_request
def _start_presence() -> None:
    # Every web process sweeps for abandoned generations, readers or not;
    # started on the first request so nothing runs at import or fork.
    presence(services()).start()


def direct_socket() -> Direct | None:
    """This response's socket, if the hub may write its live events to it.

    Only a plain-TCP gunicorn connection speaking HTTP/1.1 to a GET, whose
    body gunicorn frames as chunks (the hub writes the same framing). The
    hub needs the raw non-blocking socket under gunicorn's (and gevent's)
    wrappers; under any other server, with TLS terminated by gunicorn, for
    HTTP/1.0, or whenever the raw socket cannot be found, None: every event
    then goes through the WSGI response as usual.
    """
    environ = request.environ
    sock = environ.get("gunicorn.socket")
    if (not DIRECT_WRITES or sock is None or environ.get("SERVER_PROTOCOL") != "HTTP/1.1"
            or request.method != "GET"):
        return None
    raw = sock
    for _ in range(MAX_SOCKET_WRAPPERS):
        if hasattr(raw, "cipher") or hasattr(raw, "_sslobj"):
            return None  # TLS: the bytes must go through the TLS layer
        if isinstance(raw, _socket.socket):  # the C socket (gevent's wraps one)
            break
        raw = getattr(raw, "_sock", None)
        if raw is None:
            return None
    else:
        return None
    if raw.gettimeout() != 0.0:
        return None  # a blocking socket would stall the hub
    return Direct(raw, sock.sendall)


def relay(svc: Services, gen_id: str, after: int, opening: Opening | None,
          watch: Presence | None = None, abandon_s: int | None = None,
          direct: Direct | None = None, ended: bool = False,
          first_page: list[LogEntry] | None = None) -> Iterator[bytes]:
    """Yield SSE bytes from event `after` on until the terminal event.

    Each run of consecutive events (a backlog page, or all live events
    already queued) goes out as one write: one syscall, not one per token.
    With `direct` (see `direct_socket`), live events of a caught-up reader
    are written by the hub, one send per reader per published message.
    """
    # The retry line rides with the first frames when they are at hand (an
    # offset opening, the page read with the record): one send, one wake-up
    # for the client. Otherwise it goes alone at once, so the headers do.
    retry_line = sse.retry(svc.settings.sse_retry_ms)
    if opening is not None:
        yield retry_line + b"".join(opening.frames)
        if opening.complete:
            return
        retry_line = b""
    elif not first_page:
        yield retry_line
        retry_line = b""
    if watch is not None:
        watch.attach(gen_id, abandon_s)
    runs = follow_batches(svc, gen_id, after, direct, ended, first_page)
    del first_page  # follow_batches lets go of it once sent (see there)
    try:
        while True:
            rest, write = b"", NO_WRITE
            for batch in runs:
                if isinstance(batch, Quiet):
                    yield retry_line + sse.PING
                    retry_line = b""
                    continue
                for write in writes(batch):
                    if direct is None or retry_line:  # the first write carries the headers
                        yield retry_line + write.data
                        retry_line = b""
                    elif rest := send_now(direct.raw, sse.http_chunk(write.data)):
                        if run_bytes(batch) <= GRACE_HOLD_BYTES:
                            rest = wait_out(direct.raw, rest)
                        if rest:
                            break
                del batch  # not held while the next one is read (see follow._backlog)
                if rest:
                    break
                write = NO_WRITE
            if not rest or direct is None:
                return
            # The client stopped reading (webapp.relay.writes): wait holding
            # only this write's rest, then follow the log again after it.
            runs.close()
            direct.sendall(rest)
            if write.terminal:
                return
            after, rest, write = write.last_seq, b"", NO_WRITE
            runs = follow_batches(svc, gen_id, after, direct, ended, behind=True)
    except OSError:  # a send to the client failed: it is gone (redis errors are not OSError)
        return
    except HubUnavailable:
        return
    except redis.RedisError as exc:
        log.warning("stream %s ended: redis %s", gen_id, type(exc).__name__)
    finally:
        if watch is not None:
            watch.detach(gen_id)


def _event_stream(body: Iterator[bytes]) -> Response:
    return Response(
        body,
        mimetype="text/event-stream",
        content_type="text/event-stream; charset=utf-8",
        headers=SSE_HEADERS,
        # The body is bytes already: no re-encoding wrapper around it (one
        # generator fewer on every reader's stack while it waits).
        direct_passthrough=True,
    )


def retry_later(svc: Services) -> Response:
    """An empty stream that only says when to retry.

    EventSource gives up for good on any non-200 answer, so while Redis is
    unreachable the route answers 200 with `retry:` and ends: the browser
    reconnects (with its Last-Event-ID) and resumes once Redis is back.
    """
    return _event_stream(iter([sse.retry(svc.settings.sse_retry_ms),
                               sse.comment("event store unavailable; retrying")]))


@bp.get("/v1/generations/<gen_id>/events")
def events(gen_id: str) -> ResponseReturnValue:
    """Server-Sent Events of one generation, resumable."""
    svc = services()
    try:
        return open_stream(svc, gen_id)
    except redis.RedisError as exc:
        log.warning("events %s: redis %s; asking the client to retry", gen_id,
                    type(exc).__name__)
        return retry_later(svc)


def open_stream(svc: Services, gen_id: str) -> Response:
    """Check access and resume point, then start the relay (or 204)."""
    resume = parse_resume()
    # Without a token the caller's key decides, before anything is looked up.
    tenant = None if "token" in request.args else authenticate(svc.settings)
    first_page = None
    if resume.offset is not None or not is_generation_id(gen_id):
        record = find_generation(svc, gen_id, tenant, OPENING_FIELDS, svc.reader_generations)
    else:
        # The record's opening fields and the first page of the log, in one round trip.
        loaded, first_page = svc.reader_generations.load_fields_and_page(
            gen_id, OPENING_FIELDS, resume.after, READ_PAGE)
        record = owned_generation(svc, gen_id, tenant, loaded)
    authorize_stream(svc.settings, gen_id, record.get("tenant", ""))
    logs.bind(tenant=record.get("tenant"))
    ended = int(record.get("ended", 0))
    after, opening = resume.after, None
    if resume.offset is not None:
        opening = offset_start(svc, gen_id, resume.offset)
        after = opening.after
    elif ended and after >= ended:
        return Response(status=204)
    elif after > int(record.get("last_seq", 0)) and not ended:
        raise ApiError(400, "resume point is past the end of the log", param="Last-Event-ID")
    RECORDER.inc(STREAMS)
    return _event_stream(relay(svc, gen_id, after, opening, presence(svc),
                               int(record.get("abandon_after_s") or 0) or None,
                               direct_socket(), ended=bool(ended), first_page=first_page))
