"""Peer (c): flask-sse for the fan-out path.

A publisher greenlet reads the provider and `sse.publish`es every delta;
browsers subscribe at `/stream?channel=...` — one Redis pub/sub connection
per browser, no replay, no heartbeat. Run: `gunicorn -k gevent
bench.peers.flasksse_app:app` with `REDIS_URL` and `OPENAI_BASE_URL` set.
"""

from __future__ import annotations

import os
from typing import Any

import gevent
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from flask_sse import sse
from openai import OpenAI

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")
client = OpenAI(max_retries=0)


def publish_answer(channel: str, messages: Any) -> None:
    """Read the provider's stream and publish each delta to the channel."""
    with app.app_context():
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True)
        for part in stream:
            text = part.choices[0].delta.content if part.choices else None
            if text:
                sse.publish({"text": text}, type="delta", channel=channel)
        sse.publish({"finish_reason": "stop"}, type="done", channel=channel)


@app.post("/generate")
def generate() -> ResponseReturnValue:
    """Start a generation in the background; its events go to `channel`."""
    body = request.get_json()
    gevent.spawn(publish_answer, body["channel"], body["messages"])
    return jsonify({"channel": body["channel"]}), 202
