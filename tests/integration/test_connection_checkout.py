"""A pool checkout under gevent: no trip through the event loop, same health checks.

Run in a child process with gevent's monkey patching, as the web and the
worker run: the test process itself is not patched, where `select.poll`
never yields and the property could not fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

CHILD = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import json, sys
    import greenlet, redis
    from spool.connection import connect

    url = sys.argv[1]
    client = connect(url, blocking=True, max_connections=2)
    pool = client.connection_pool
    client.set("checkout:key", "value")
    switches = []
    greenlet.settrace(lambda event, args: switches.append(event))
    for _ in range(50):
        pool.release(pool.get_connection())
    greenlet.settrace(None)

    stale = pool.get_connection()  # a reply left unread on a pooled connection
    stale.send_command("ECHO", "stale")
    pool.release(stale)
    import time; time.sleep(0.05)
    after_stale = client.get("checkout:key")

    other = redis.Redis.from_url(url)
    other.client_kill_filter(_type="normal", skipme=True)  # closes ours from the server
    time.sleep(0.05)
    after_kill = client.get("checkout:key")
    client.delete("checkout:key")
    print(json.dumps({"switches": len(switches), "after_stale": after_stale,
                      "after_kill": after_kill}))
""")


def test_checkout_does_not_yield_and_still_drops_stale_or_closed_connections(
        redis_server: Any) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, redis_server.url], capture_output=True,
                          text=True, timeout=60, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"switches": 0, "after_stale": "value", "after_kill": "value"}
