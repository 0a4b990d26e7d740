"""Peer (b): the same direct proxy in Flask, served by gunicorn's gevent worker.

The sync `openai` client becomes cooperative under gevent's patching. Run:
`gunicorn -k gevent bench.peers.flask_proxy:app` with `OPENAI_BASE_URL` set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Flask, Response, request, stream_with_context
from openai import OpenAI

app = Flask(__name__)
client = OpenAI(max_retries=0)


@app.post("/chat")
def chat() -> Response:
    """Stream the model's answer to the browser as Server-Sent Events."""
    messages = request.get_json()["messages"]

    def events() -> Iterator[str]:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True)
        for part in stream:
            text = part.choices[0].delta.content if part.choices else None
            if text:
                yield f"event: delta\ndata: {json.dumps({'text': text})}\n\n"
        yield 'event: done\ndata: {"finish_reason": "stop"}\n\n'

    return Response(stream_with_context(events()), mimetype="text/event-stream")
