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
