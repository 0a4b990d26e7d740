"""Responses as stored: a response's fixed fields from its generation's record,
its log read back as a response, and the `item_reference` input items that
point into earlier responses.

Nothing here is stored besides the generation itself: a response object is
the log translated (`ResponseEvents`), and an output item's id names its
response and position (`msg_<x>_<n>`, `fc_<x>_<n>`: item n of `resp_<x>`), so
an item reference is resolved by reading that response's log. The Vercel AI
SDK's OpenAI provider sends earlier assistant text this way (`store` is on by
default), so a multi-step or multi-turn conversation needs it.
"""

from __future__ import annotations

from typing import Any

import orjson

from spool.ids import is_generation_id
from webapp.facades.chat_request import invalid
from webapp.facades.responses_format import (
    CALL_ITEM_ID_PREFIX,
    GENERATION_ID_PREFIX,
    MESSAGE_ID_PREFIX,
    ResponseEvents,
    response_id,
)
from webapp.services import Services

REFERENCE = "item_reference"
ECHO_FIELD = "responses"  # of the record: the request fields a response echoes (JSON)


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    return {"type": "function", "name": function.get("name"),
            "description": function.get("description"),
            "parameters": function.get("parameters"), "strict": False}


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        return {"type": "function", "name": (choice.get("function") or {}).get("name")}
    return choice or "auto"


def derived_echo(request: dict[str, Any]) -> dict[str, Any]:
    """What a response object echoes, for a generation not started as a response."""
    response_format = request.get("response_format") or {"type": "text"}
    return {
        "model": f"{request.get('provider')}/{request.get('model')}",
        "instructions": request.get("system"),
        "tools": [_chat_tool(t) for t in request.get("tools") or []],
        "tool_choice": _chat_tool_choice(request.get("tool_choice")),
        "max_output_tokens": request.get("max_tokens"),
        "temperature": request.get("temperature"),
        "top_p": None,
        "parallel_tool_calls": True,
        "background": False,
        "text": {"format": {"type": response_format.get("type", "text")}},
        "truncation": "disabled",
    }


def head(gen_id: str, created_ms: int, metadata: dict[str, Any],
         echo: dict[str, Any]) -> dict[str, Any]:
    """The fields of a response object that its log does not change."""
    return {"id": response_id(gen_id), "object": "response", "created_at": created_ms // 1000,
            "metadata": metadata, "previous_response_id": None, **echo}


def response_head(gen_id: str, record: dict[str, str]) -> dict[str, Any]:
    """`head` from a generation's record (the same as at its creation)."""
    raw_echo = record.get(ECHO_FIELD)
    echo = (orjson.loads(raw_echo) if raw_echo
            else derived_echo(orjson.loads(record.get("request") or "{}")))
    return head(gen_id, int(record.get("created_ms", 0)),
                orjson.loads(record.get("metadata") or "{}"), echo)


def from_log(svc: Services, gen_id: str, record: dict[str, str]) -> ResponseEvents:
    """The translator after every event of the generation's log so far."""
    events = ResponseEvents(response_head(gen_id, record))
    for entry in svc.log.read_all(gen_id):
        events.feed(entry.event, orjson.loads(entry.data))
    return events


def item_location(item_id: str) -> tuple[str, int] | None:
    """(generation id, output index) an output item id names, or None."""
    for prefix in (MESSAGE_ID_PREFIX, CALL_ITEM_ID_PREFIX):
        if item_id.startswith(prefix):
            random, sep, index = item_id[len(prefix):].rpartition("_")
            gen_id = GENERATION_ID_PREFIX + random
            if sep and index.isdigit() and is_generation_id(gen_id):
                return gen_id, int(index)
    return None


def _output(svc: Services, tenant: str, gen_id: str) -> list[dict[str, Any]]:
    """The output items of a response of `tenant` (none for another's or an expired one)."""
    record = svc.generations.load(gen_id)
    if record is None or record.get("tenant") != tenant:
        return []
    output: list[dict[str, Any]] = from_log(svc, gen_id, record).response()["output"]
    return output


def _reference(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == REFERENCE


def resolve_references(svc: Services, tenant: str, items: Any) -> Any:
    """`input` with every `item_reference` replaced by the item it names; 400 if none."""
    if not isinstance(items, list) or not any(_reference(item) for item in items):
        return items
    outputs: dict[str, list[dict[str, Any]]] = {}  # one log read per referenced response
    resolved: list[Any] = []
    for index, item in enumerate(items):
        if not _reference(item):
            resolved.append(item)
            continue
        param = f"input[{index}].id"
        item_id = item.get("id")
        if not isinstance(item_id, str):
            raise invalid("an item_reference needs a string id", param)
        location = item_location(item_id)
        found = None
        if location is not None:
            gen_id, position = location
            if gen_id not in outputs:
                outputs[gen_id] = _output(svc, tenant, gen_id)
            if position < len(outputs[gen_id]):
                found = outputs[gen_id][position]
        if found is None or found["id"] != item_id:
            raise invalid(f"Item with id '{item_id}' not found.", param, "item_not_found")
        resolved.append(found)
    return resolved
