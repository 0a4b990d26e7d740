"""The SSE relay: the per-process pub/sub hub, log-then-live following, the stream route."""
