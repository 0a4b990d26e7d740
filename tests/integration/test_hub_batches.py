"""The hub hands a channel's messages that arrived together to a reader as one run.

Run in a child process patched by gevent, as the web is (the hub's socket
reads must yield to the loop).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.harness import ROOT

SCRIPT = r'''
from gevent import monkey
monkey.patch_all()
import json, sys
import redis
from webapp.relay.hub import Hub, Live

hub = Hub(sys.argv[1])
burst = hub.subscribe("hubtest:burst")
other = hub.subscribe("hubtest:other")
publisher = redis.Redis.from_url(sys.argv[1])
pipe = publisher.pipeline(transaction=False)
for seq in range(1, 51):
    pipe.publish("hubtest:burst", '%d delta {"text":"%d"}' % (seq, seq))
    if seq % 10 == 0:
        pipe.publish("hubtest:other", '%d delta {"text":"x"}' % (seq // 10))
pipe.execute()

def drain(sub, count):
    items, seqs = 0, []
    while len(seqs) < count:
        item = sub.queue.get(timeout=5)
        items += 1
        seqs += [e.seq for e in ((item,) if isinstance(item, Live) else item)]
    return {"items": items, "seqs": seqs}

print(json.dumps({"burst": drain(burst, 50), "other": drain(other, 5)}))
'''


def test_a_burst_of_messages_reaches_a_reader_as_one_run(redis_server: Any) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, redis_server.url], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Each channel's events in order and only its own...
    assert result["burst"]["seqs"] == list(range(1, 51))
    assert result["other"]["seqs"] == [1, 2, 3, 4, 5]
    # ...in one item (one socket write per reader), not one per message.
    assert result["burst"]["items"] <= 3



LARGE_SCRIPT = r'''
from gevent import monkey
monkey.patch_all()
import json, sys
import gevent
import redis
from webapp.relay.hub import Hub, Live, Gap

hub = Hub(sys.argv[1])
stalled = hub.subscribe("hubtest:big")
prompt = hub.subscribe("hubtest:big")
taken = []

def take():
    while True:
        item = prompt.queue.get()
        taken.append("gap" if isinstance(item, Gap)
                     else [e.seq for e in ((item,) if isinstance(item, Live) else item)])

gevent.spawn(take)
publisher = redis.Redis.from_url(sys.argv[1])
pipe = publisher.pipeline(transaction=False)
for seq in range(1, 41):  # 40 events of 64 KB (2.6 MB) published at once
    pipe.publish("hubtest:big", '%d delta {"text":"%s"}' % (seq, "x" * 65536))
pipe.execute()
gevent.sleep(2.0)
held = []
while stalled.queue.qsize():
    item = stalled.queue.get_nowait()
    held.append("gap" if isinstance(item, Gap) else "events")
print(json.dumps({"taken": taken, "held": held, "overflowed": stalled.overflowed}))
'''


def test_a_burst_of_large_events_is_cut_into_bounded_items(redis_server: Any) -> None:
    """The hub's batch stops at ~1 MB, and a stalled reader's queue at its byte bound."""
    done = subprocess.run([sys.executable, "-c", LARGE_SCRIPT, redis_server.url], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # A reader that keeps up gets every event, in items of at most ~1 MB
    # (16 events of 64 KB), not the whole 2.6 MB burst in one.
    runs = result["taken"]
    assert [seq for run in runs for seq in run] == list(range(1, 41)), runs
    assert len(runs) >= 3 and max(len(run) for run in runs) <= 16, runs
    # A stalled reader holds one item at most, then overflows to the log.
    assert result["overflowed"] and result["held"] == ["gap"], result


CHECK_SCRIPT = r'''
from gevent import monkey
monkey.patch_all()
import json, sys
import gevent
import redis
from webapp.relay.hub import Hub

hub = Hub(sys.argv[1])
conn = hub._pool.make_connection()  # what the hub's read loop reads from
conn.connect()
turns = []
gevent.spawn(turns.append, "another greenlet ran")
quiet = conn.can_read(timeout=0)
yielded = bool(turns)
conn.send_command("PING")
gevent.sleep(0.1)
waiting = conn.can_read(timeout=0)
reply = conn.read_response()
conn.send_command("CLIENT", "ID")
own_id = conn.read_response()
redis.Redis.from_url(sys.argv[1]).client_kill_filter(_id=own_id)
gevent.sleep(0.1)
try:
    closed = conn.can_read(timeout=0)
except redis.ConnectionError:
    closed = "raised"
print(json.dumps({"quiet": quiet, "yielded": yielded, "waiting": waiting,
                  "reply": reply.decode(), "closed": closed}))
'''


def test_the_hubs_more_waiting_check_does_not_go_round_the_loop(redis_server: Any) -> None:
    """After each message the hub asks its connection whether more is waiting.
    Under gevent redis-py asks with a patched poll that switches to the loop
    (every other ready greenlet runs first); the hub's connection answers with
    the system's zero-timeout poll, and still sees a reply or a closed socket."""
    done = subprocess.run([sys.executable, "-c", CHECK_SCRIPT, redis_server.url], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["quiet"] is False
    assert result["yielded"] is False
    assert result["waiting"] is True and result["reply"] == "PONG"
    assert result["closed"] in (True, "raised")
