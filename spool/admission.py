"""Admission: everything `POST /v1/generations` writes before the enqueue, in one call.

One Lua script counts the request against its credential's rate, looks up
the idempotency key, takes one of the tenant's active places (ZCARD + ZADD
on the tenant's set: O(1)), claims the idempotency key, writes the record,
its tombstone and event 1 (`status: queued`) and publishes it. A refusal
(rate, active limit) or an idempotent replay changes nothing but the rate
counter. The enqueue on RQ's Redis is the request's second round trip.

On a Redis Cluster one script cannot span the tenant's keys and the
generation's (different slots). There the tenant's rate and active keys
share a hash tag (`spool.keys`), so the same script runs on the tenant's
slot with only those two keys; the idempotency key is claimed with SET NX
(its own slot), and the record and event 1 follow as one MULTI on the
generation's slot: three round trips instead of two (four with an
idempotency key). A place taken by a web process that dies between them is
given back by the repair (`spool.limits.prune_active`, once the reservation
is older than its grace).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spool import limits
from spool.clock import now_ms
from spool.connection import is_cluster
from spool.events import STATUS, encode_entry
from spool.generations import Generations
from spool.ids import is_generation_id
from spool.log import dumps

IDEMPOTENCY_TTL_S = 86400
QUEUED_ENTRY = encode_entry(1, STATUS, dumps({"status": "queued"}))

_ADMIT_LUA = """
-- KEYS: 1 rate, 2 active; single Redis also: 3 idempotency, 4 record, 5 log,
--       6 tombstone, 7 channel, 8 abandon index
-- ARGV: 1 gen id, 2 rate limit (0: not counted here), 3 rate ttl,
--       4 idempotency ttl (0: no key), 5 'nx' or 'force' (take a stale key over),
--       6 active limit (0: takes no place), 7 live ttl, 8 now ms;
--       with the generation's keys: 9 tombstone ttl, 10 tenant, 11 event 1,
--       12 publish command, 13 abandon at ms ('' none), 14 count F of record
--       field/value args, 15..14+F those, then commands to run once admitted
--       (RQ's enqueue, when RQ shares this Redis), each as: argc, args
-- Ids are new per request: a record already there means this very call ran
-- (its reply lost, the client's retry resent it). Running it again would
-- count the rate twice, push event 1 and the RQ job a second time.
if #KEYS > 3 and redis.call('EXISTS', KEYS[4]) == 1 then return {'ok', 0} end
if ARGV[2] ~= '0' then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
  if n > tonumber(ARGV[2]) then return {'rate', n} end
end
if ARGV[4] ~= '0' and ARGV[5] == 'nx' then
  local earlier = redis.call('GET', KEYS[3])
  if earlier then return {'existing', earlier} end
end
if ARGV[6] ~= '0' then
  local n = redis.call('ZCARD', KEYS[2])
  if n >= tonumber(ARGV[6]) then return {'active', n} end
  redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
if ARGV[4] ~= '0' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[4]) end
if #KEYS > 3 then
  local f = tonumber(ARGV[14])
  redis.call('HSET', KEYS[4], 'last_seq', 1, unpack(ARGV, 15, 14 + f))
  redis.call('EXPIRE', KEYS[4], ARGV[7])
  redis.call('SET', KEYS[6], ARGV[10], 'EX', ARGV[9])
  redis.call('RPUSH', KEYS[5], ARGV[11])
  redis.call('EXPIRE', KEYS[5], ARGV[7])
  if ARGV[13] ~= '' then
    redis.call('ZADD', KEYS[8], ARGV[13], ARGV[1])
    redis.call('EXPIRE', KEYS[8], ARGV[7])
  end
  redis.call(ARGV[12], KEYS[7], ARGV[11])
  local i = 15 + f
  while i <= #ARGV do
    local n = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
end
return {'ok', 0}
"""


@dataclass(frozen=True)
class Ticket:
    """One generation asking to be admitted."""

    gen_id: str
    tenant: str
    record: dict[str, Any]  # from Generations.new_record
    rate: tuple[str, int] | None = None  # (credential, limit): count this request here
    idempotency_key: str | None = None
    active_limit: int = 0  # 0: takes no place
    # Commands run by the script once admitted: RQ's enqueue, recorded from
    # RQ's own code, when RQ shares Spool's (single) Redis. Empty: the
    # caller enqueues after admission.
    enqueue: tuple[tuple[Any, ...], ...] = ()


@dataclass(frozen=True)
class Admitted:
    """The generation to answer with; `existing` for an idempotent replay."""

    gen_id: str
    existing: bool = False


class Refused(Exception):
    """Over a limit: `kind` is 'rate' or 'active'."""

    def __init__(self, kind: str, verdict: limits.Verdict) -> None:
        super().__init__(kind)
        self.kind = kind
        self.verdict = verdict


class Admission:
    """Admits generations for one Spool Redis (single node or Cluster)."""

    def __init__(self, generations: Generations,
                 send: Callable[[tuple[Any, ...]], Any] | None = None) -> None:
        """`send`: runs one command and returns its reply (or raises its error);
        by default on the client, one round trip each (the web shares them)."""
        self.generations = generations
        self.client = generations.client
        self.keys = generations.keys
        self.cluster = is_cluster(self.client)
        self._script = self.client.register_script(_ADMIT_LUA)
        self._send = send

    @property
    def script(self) -> tuple[str, str]:
        """(sha, source) of the admission script."""
        return self._script.sha, _ADMIT_LUA

    def admit(self, ticket: Ticket) -> Admitted:
        """Admit `ticket` (one round trip on a single Redis), or raise Refused."""
        if self.cluster:
            return self._admit_on_cluster(ticket)
        rate, mode = ticket.rate, "nx"
        while True:
            verdict, value = self._run(ticket, rate, mode)
            rate = None  # counted once, whatever happens next
            if verdict == "ok":
                return Admitted(ticket.gen_id)
            if verdict == "existing":
                if self._alive(value):
                    return Admitted(value, existing=True)
                mode = "force"  # the earlier attempt never got as far as a record
            else:
                self._refused(ticket, verdict, value)

    def _refused(self, ticket: Ticket, verdict: str, value: Any) -> None:
        """Raise Refused, unless the repair freed leaked places (then admission retries)."""
        if verdict == "rate":
            raise Refused("rate", limits.rate_refusal(int(value)))
        if not limits.maybe_repair(self.client, self.keys, ticket.tenant, now_ms()):
            raise Refused("active", limits.active_refusal(int(value)))

    def _run(self, ticket: Ticket, rate: tuple[str, int] | None, mode: str,
             *, whole: bool = True) -> tuple[str, Any]:
        """One script call; `whole=False` runs only the tenant part (a Cluster slot)."""
        k, retention = self.keys, self.generations.log.retention
        now = now_ms()
        credential, rate_limit = rate if rate is not None else ("", 0)
        keys = [k.rate(ticket.tenant, credential, limits.rate_window(now / 1000)),
                k.active(ticket.tenant)]
        args: list[Any] = [
            ticket.gen_id, rate_limit, limits.RATE_WINDOW_S + limits.RATE_KEY_SLACK_S,
            IDEMPOTENCY_TTL_S if ticket.idempotency_key and whole else 0, mode,
            ticket.active_limit, retention.live_s, now,
        ]
        if whole:
            gen = ticket.gen_id
            keys += [k.idempotency(ticket.tenant, ticket.idempotency_key or ""),
                     k.record(gen), k.log(gen), k.tombstone(gen), k.channel(gen),
                     k.abandon_index()]
            args += [retention.live_s + retention.tombstone_s, ticket.tenant, QUEUED_ENTRY,
                     self.generations.log.publish_command, _abandon_at(ticket.record)]
            fields = [x for name, value in ticket.record.items() if name != "last_seq"
                      for x in (name, value)]
            args += [len(fields), *fields]
            for command in ticket.enqueue:
                args += [len(command), *command]
        if self._send is None:
            verdict, value = self._script(keys=keys, args=args)
        else:
            verdict, value = self._send(("EVALSHA", self._script.sha, len(keys), *keys, *args))
        return str(verdict), value

    def _admit_on_cluster(self, ticket: Ticket) -> Admitted:
        """The same steps where no script may span slots: the tenant's slot (rate,
        place), the idempotency key, then the record and event 1 on the generation's."""
        rate = ticket.rate
        while True:
            verdict, value = self._run(ticket, rate, "nx", whole=False)
            rate = None
            if verdict == "ok":
                break
            self._refused(ticket, verdict, value)
        try:
            earlier = self._claim_idempotency(ticket)
            if earlier is not None:
                self._give_back(ticket)
                return Admitted(earlier, existing=True)
            self.generations.write_record(ticket.gen_id, ticket.record)
        except BaseException:
            self._give_back(ticket)
            raise
        return Admitted(ticket.gen_id)

    def _claim_idempotency(self, ticket: Ticket) -> str | None:
        """Claim the key for this generation; the earlier one's id if it still lives."""
        if not ticket.idempotency_key:
            return None
        key = self.keys.idempotency(ticket.tenant, ticket.idempotency_key)
        if self.client.set(key, ticket.gen_id, nx=True, ex=IDEMPOTENCY_TTL_S):
            return None
        earlier = self.client.get(key)
        if self._alive(earlier):
            return str(earlier)
        self.client.set(key, ticket.gen_id, ex=IDEMPOTENCY_TTL_S)
        return None

    def _give_back(self, ticket: Ticket) -> None:
        if ticket.active_limit:
            limits.release_active(self.client, self.keys, ticket.tenant, ticket.gen_id)

    def _alive(self, gen_id: Any) -> bool:
        """Whether an idempotency key's generation still has a record or a tombstone."""
        if not isinstance(gen_id, str) or not is_generation_id(gen_id):
            return False
        return bool(self.generations.load(gen_id) or self.generations.tombstone_tenant(gen_id))


def _abandon_at(record: dict[str, Any]) -> str:
    if "abandon_after_s" not in record:
        return ""
    return str(int(record["created_ms"]) + int(record["abandon_after_s"]) * 1000)
