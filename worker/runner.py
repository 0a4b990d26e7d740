"""Run one generation: provider stream in, events out, one terminal event always.

Completeness is decided by what was seen: a stream that stops without a
finish reason is an error, never `done`. Whatever happens (provider error,
cancel, a bug) the runner ends the log, unless someone else already did
(the append script refuses a second terminal event).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from spool import logs
from spool.clock import now_ms
from spool.events import CANCELLED, DELTA, DONE, ERROR, NOTICE, STATUS, TOOL_CALL
from spool.generations import cancel_fields
from spool.metrics import Observation
from worker.coalesce import Coalescer
from worker.context import WorkerContext
from worker.control import Cancelled, Handle, JobTimeout
from worker.providers import get_provider
from worker.providers.base import (
    Finish,
    Piece,
    ProviderError,
    Stream,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from worker.toolcalls import ToolCallAccumulator

log = logging.getLogger("spool.runner")


def open_stream(
    ctx: WorkerContext, request: dict[str, Any], notify: Callable[[str], None]
) -> Stream:
    """Open the provider stream (retry and fallback policy live with the providers)."""
    try:
        from worker.providers import resilient  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return get_provider(request["provider"], ctx.settings).open(request)
    return resilient.open_stream(request, ctx.settings, request["provider"], notify)


@dataclass
class Progress:
    """What the runner has seen so far."""

    started_ms: int
    queue_ms: int
    first_token_ms: int | None = None
    output_chunks: int = 0
    text_parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish: str | None = None
    tools: ToolCallAccumulator = field(default_factory=ToolCallAccumulator)

    def metrics(self) -> dict[str, Any]:
        """API.md metrics at this moment."""
        now = now_ms()
        duration = now - self.started_ms
        ttft = None if self.first_token_ms is None else self.first_token_ms - self.started_ms
        tokens = self.usage.output_tokens if self.usage else self.output_chunks
        streaming_s = (now - (self.first_token_ms or now)) / 1000.0
        rate = round(tokens / streaming_s, 2) if streaming_s > 0 and tokens else None
        return {"queue_ms": self.queue_ms, "ttft_ms": ttft, "duration_ms": duration,
                "tokens_per_second": rate}

    def usage_data(self) -> dict[str, int] | None:
        """Usage as event data."""
        if self.usage is None:
            return None
        return {"input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens}


class Runner:
    """Runs generation `gen_id` in the calling greenlet."""

    def __init__(self, ctx: WorkerContext, gen_id: str) -> None:
        self.ctx = ctx
        self.gen_id = gen_id
        self.obs: Observation | None = None
        self.request: dict[str, Any] = {}
        self.progress: Progress | None = None
        self._open_stream: Stream | None = None  # the provider stream, once opened

    def emit(self, event: str, data: Any, fields: dict[str, Any] | None = None,
             *, wait: bool = False) -> int | None:
        """Queue one event for this generation."""
        return self.ctx.writer.emit(self.gen_id, event, data, fields, wait=wait)

    def run(self, record: dict[str, str] | bool | None = True,
            started_ms: int | None = None) -> None:
        """Run to a terminal event (or return at once if there is nothing to do).

        `record`: the record as the worker's claim loaded it (None: it does
        not exist); left out, it is loaded here. `started_ms`: the claim
        already appended `in_progress` at that time (`spool.start`).
        """
        if record is True:
            record = self.ctx.generations.load(self.gen_id)
        if not isinstance(record, dict) or "ended" in record:
            return
        request: dict[str, Any] = orjson.loads(record["request"])
        handle = self.ctx.watcher.register(self.gen_id)
        started = now_ms() if started_ms is None else started_ms
        progress = Progress(started_ms=started, queue_ms=started - int(record["created_ms"]))
        self.obs = Observation(request["provider"], record.get("priority", "interactive"),
                               progress.queue_ms / 1000.0)
        logs.bind(generation_id=self.gen_id, tenant=record.get("tenant"))
        self.request, self.progress = request, progress
        try:
            if record.get("cancel"):
                raise Cancelled(record["cancel"])
            if started_ms is None:
                self.emit(STATUS, {"status": "in_progress"}, {
                    "status": "in_progress", "started_ms": started,
                    "worker": self.ctx.worker_id,
                    "metrics": progress.metrics(),
                })
            self._stream(request, handle, progress)
        except Cancelled as cancel:
            self._end_cancelled(cancel.reason, progress)
        except JobTimeout as timeout:
            self._end_error("timeout", str(timeout), True, progress)
            raise  # the worker records the RQ job as failed
        except ProviderError as exc:
            self._end_error(exc.type, exc.message, exc.retryable, progress)
        except Exception:
            log.exception("generation %s failed unexpectedly", self.gen_id)
            self._end_error("provider_error", "internal error while generating", True, progress)
        finally:
            self.obs.close()
            logs.unbind("generation_id", "tenant")
            self.ctx.watcher.unregister(self.gen_id)
            self.ctx.writer.forget(self.gen_id)

    def _pieces(self, stream: Stream, handle: Handle) -> Iterator[Piece]:
        iterator = iter(stream)
        while True:
            if handle.reason is not None:
                raise Cancelled(handle.reason)
            if self.ctx.writer.refused(self.gen_id):
                return  # the log was ended elsewhere (cancel of a queued job, lease settle)
            handle.interruptible = True
            try:
                piece = next(iterator)
            except StopIteration:
                return
            finally:
                handle.interruptible = False
            yield piece

    def _stream(self, request: dict[str, Any], handle: Handle, progress: Progress) -> None:
        coalescer = Coalescer(request.get("buffer") or "none")

        def notify(message: str) -> None:
            if self.obs is not None:
                self.obs.retry()
            self.emit(NOTICE, {"message": message})

        stream = open_stream(self.ctx, request, notify)
        self._open_stream = stream
        try:
            for piece in self._pieces(stream, handle):
                if isinstance(piece, TextDelta):
                    self._on_text(piece.text, coalescer, progress)
                elif isinstance(piece, ToolCallDelta):
                    progress.tools.add(piece)
                elif isinstance(piece, Usage):
                    progress.usage = piece
                elif isinstance(piece, Finish):
                    progress.finish = piece.reason
        except BaseException:
            self._send_text(coalescer.flush(), progress)
            raise
        finally:
            stream.close()
            self._label_served()
        self._send_text(coalescer.flush(), progress)
        if self.ctx.writer.refused(self.gen_id):
            return
        # After a fallback, the record names the provider and model that really answered.
        served = {"provider": getattr(stream, "provider", None),
                  "model": getattr(stream, "model", None)}
        self._finish(request, progress, {k: v for k, v in served.items() if v})

    def _label_served(self) -> None:
        """Label metrics with the provider that is answering (a fallback, perhaps)."""
        served = getattr(self._open_stream, "provider", None)
        if self.obs is not None and isinstance(served, str):
            self.obs.provider = served

    def _on_text(self, text: str, coalescer: Coalescer, progress: Progress) -> None:
        if progress.first_token_ms is None:
            progress.first_token_ms = now_ms()
            self._label_served()
        if self.obs is not None:
            self.obs.text_piece()
        progress.output_chunks += 1
        self._send_text(coalescer.feed(text), progress)

    def _send_text(self, text: str, progress: Progress) -> None:
        if not text:
            return
        parts = progress.text_parts
        parts.append(text)
        if len(parts) == 1:  # ttft visible while streaming
            self.emit(DELTA, {"text": text}, {"metrics": progress.metrics()})
        else:
            self.ctx.writer.emit(self.gen_id, DELTA, {"text": text})  # once per token

    def _finish(self, request: dict[str, Any], progress: Progress,
                served: dict[str, Any]) -> None:
        if progress.finish is None:
            raise ProviderError(
                "provider_error",
                "the provider stream ended without a finish reason (truncated)",
                retryable=True,
            )
        for call in progress.tools.complete():
            self.emit(TOOL_CALL, call)
        data: dict[str, Any] = {"finish_reason": progress.finish,
                                "usage": progress.usage_data(),
                                "metrics": progress.metrics()}
        fields: dict[str, Any] = {"status": "completed", "finish_reason": progress.finish,
                                  "usage": data["usage"], "metrics": data["metrics"],
                                  "finished_ms": now_ms(), **served}
        fmt = request.get("response_format") or {}
        if fmt.get("type") == "json_object":
            try:
                parsed = orjson.loads("".join(progress.text_parts))
            except orjson.JSONDecodeError:
                raise ProviderError("invalid_json", "the answer is not valid JSON") from None
            data["parsed"] = parsed
            fields["parsed"] = orjson.dumps(parsed).decode()
        self._ended(self.emit(DONE, data, fields, wait=True), "completed", progress.finish)

    def _end_error(self, error_type: str, message: str, retryable: bool,
                   progress: Progress) -> None:
        metrics = progress.metrics()
        seq = self.emit(ERROR, {"type": error_type, "message": message, "retryable": retryable}, {
            "status": "failed", "finish_reason": "error",
            "error": {"type": error_type, "message": message},
            "usage": progress.usage_data(), "metrics": metrics, "finished_ms": now_ms(),
        }, wait=True)
        self._ended(seq, "failed", "error", error_type)

    def _end_cancelled(self, reason: str, progress: Progress) -> None:
        fields = cancel_fields(reason)
        fields.update(usage=progress.usage_data(), metrics=progress.metrics())
        seq = self.emit(CANCELLED, {"reason": reason}, fields, wait=True)
        self._ended(seq, "cancelled", str(fields["finish_reason"]))

    def _ended(self, seq: int | None, outcome: str, finish_reason: str,
               error_type: str | None = None) -> None:
        """Count and log the end, once this runner's terminal event was written."""
        if seq is None or seq < 0 or self.obs is None:
            return
        self.obs.end(outcome, finish_reason, error_type)
        # Written in a batch, like the web's request lines: one line per generation.
        logs.log_buffered(log, logging.INFO, "generation ended", {
            "outcome": outcome, "finish_reason": finish_reason, "error_type": error_type,
            "provider": self.obs.provider, "last_seq": seq,
            # Only a length unless SPOOL_LOG_CONTENT=1.
            "prompt": logs.content(_prompt_text(self.request)),
            "answer": logs.content("".join(self.progress.text_parts if self.progress else [])),
        })


def _prompt_text(request: dict[str, Any]) -> str:
    """The system prompt and messages, as one string for the log."""
    parts = [str(request.get("system") or "")]
    parts.extend(str(m.get("content", "")) for m in request.get("messages", []))
    return "\n".join(p for p in parts if p)


def run_generation(ctx: WorkerContext, gen_id: str,
                   record: dict[str, str] | bool | None = True,
                   started_ms: int | None = None) -> None:
    """Run one generation to its end (the RQ job body; arguments as in `Runner.run`).

    Its end is logged once, by `Runner._ended`.
    """
    Runner(ctx, gen_id).run(record, started_ms)
