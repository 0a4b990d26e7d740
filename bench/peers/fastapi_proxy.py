"""Peer (a): the tutorial direct streaming proxy — FastAPI + AsyncOpenAI re-emitting SSE.

No queue, no log, no durability: if the browser's connection drops, the
answer is gone. Run: `uvicorn bench.peers.fastapi_proxy:app` with
`OPENAI_BASE_URL` and `OPENAI_API_KEY` set.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI

app = FastAPI()
client = AsyncOpenAI(max_retries=0)


@app.post("/chat")
async def chat(request: Request) -> StreamingResponse:
    """Stream the model's answer to the browser as Server-Sent Events."""
    body: dict[str, Any] = await request.json()

    async def events() -> AsyncIterator[str]:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=body["messages"], stream=True)
        async for part in stream:
            text = part.choices[0].delta.content if part.choices else None
            if text:
                yield f"event: delta\ndata: {json.dumps({'text': text})}\n\n"
        yield 'event: done\ndata: {"finish_reason": "stop"}\n\n'

    return StreamingResponse(events(), media_type="text/event-stream")
