"""Sharded pub/sub on a Redis Cluster: one hub per shard, routed by slot.

On a Cluster the event log publishes with SPUBLISH, which only the shard
owning the channel's slot delivers, so a web process keeps one subscriber
connection per primary (O(shards), still not O(readers)). Each is an
ordinary `Hub` speaking the sharded verbs; this class only routes.

A slot that migrates while readers watch it is not followed live: those
readers keep catching up from the log on every ping interval (the relay's
safety net) until they reconnect, when the refreshed slot map routes them
to the new owner.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.cluster import RedisCluster

from spool.connection import publish_command
from webapp.relay.hub import SHARDED, Hub, Subscription

SLOT_MAP_REFRESH_S = 30.0  # re-read the Cluster's slot map at most this often


def node_url(base_url: str, host: str, port: int) -> str:
    """`base_url` (credentials, TLS scheme, options) pointed at one node."""
    parts = urlsplit(base_url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class ShardedHub:
    """The `Hub` interface over one sharded-pub/sub hub per Cluster primary."""

    def __init__(self, url: str, client: RedisCluster) -> None:
        self._url = url
        self._client = client
        self._hubs: dict[str, Hub] = {}
        self._owner: dict[Subscription, Hub] = {}
        self._refreshed = time.monotonic()

    def _hub_for(self, channel: str) -> Hub:
        now = time.monotonic()
        if now - self._refreshed > SLOT_MAP_REFRESH_S:
            self._refreshed = now
            self._client.nodes_manager.initialize()
        node = self._client.get_node_from_key(channel)
        hub = self._hubs.get(node.name)
        if hub is None:
            hub = self._hubs[node.name] = Hub(node_url(self._url, node.host, node.port), SHARDED)
        return hub

    def subscribe(self, channel: str) -> Subscription:
        """Register a reader with the hub of the channel's shard."""
        hub = self._hub_for(channel)
        sub = hub.subscribe(channel)
        self._owner[sub] = hub
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Deregister a reader."""
        hub = self._owner.pop(sub, None)
        if hub is not None:
            hub.unsubscribe(sub)

    @property
    def reader_count(self) -> int:
        """Readers attached in this process, over all shards."""
        return sum(hub.reader_count for hub in self._hubs.values())


def make_hub(url: str, client: Any) -> Hub | ShardedHub:
    """The hub matching how the event log publishes (see spool.connection).

    Classic pub/sub on a Cluster (Redis < 7) is broadcast to every node, so
    one ordinary hub on any node hears it.
    """
    if publish_command(client) == "SPUBLISH":
        return ShardedHub(url, client)
    return Hub(url)
