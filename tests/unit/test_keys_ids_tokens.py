"""Key names, ids and stream tokens."""

from __future__ import annotations

import re

from spool.ids import is_generation_id, new_batch_id, new_generation_id
from spool.keys import Keys
from spool.tokens import sign_stream_token, verify_stream_token

SECRET = "s" * 40


def hash_tag(key: str) -> str:
    match = re.search(r"\{([^}]*)\}", key)
    assert match, key
    return match.group(1)


def test_generation_keys_share_one_hash_tag() -> None:
    keys = Keys("ns")
    gen = new_generation_id()
    built = [keys.record(gen), keys.log(gen), keys.text(gen), keys.tool_calls(gen),
             keys.channel(gen), keys.tombstone(gen), keys.lease(gen), keys.readers(gen)]
    assert {hash_tag(k) for k in built} == {gen}
    assert len(set(built)) == len(built)
    assert all(k.startswith("ns:") for k in built)


def test_user_strings_never_appear_raw_in_keys() -> None:
    key = Keys().idempotency("tenant {x}", "my:key\n")
    assert "{" not in key and "\n" not in key and "my:key" not in key


def test_queue_names_are_namespaced() -> None:
    assert Keys("a").queue_name("interactive") != Keys("b").queue_name("interactive")


def test_ids_are_long_random_and_recognised() -> None:
    ids = {new_generation_id() for _ in range(1000)}
    assert len(ids) == 1000
    gen = next(iter(ids))
    assert gen.startswith("gen_") and len(gen) == 28
    assert is_generation_id(gen)
    assert not is_generation_id(new_batch_id())
    for bad in ["gen_short", "gen_" + "a" * 22 + "/", "../etc/passwd", "", "gen_" + "é" * 22]:
        assert not is_generation_id(bad)


def test_token_opens_only_its_generation_until_expiry() -> None:
    gen, other = new_generation_id(), new_generation_id()
    token = sign_stream_token(SECRET, gen, 60, now=1000)
    assert verify_stream_token(SECRET, gen, token, now=1000)
    assert not verify_stream_token(SECRET, other, token, now=1000)
    assert not verify_stream_token(SECRET, gen, token, now=1061)
    assert not verify_stream_token("t" * 40, gen, token, now=1000)
    expires, mac = token.split(".")
    assert not verify_stream_token(SECRET, gen, f"{int(expires) + 1000}.{mac}", now=1000)
    for bad in ["", ".", "abc", "1.", f"{expires}.", "9" * 40 + ".x"]:
        assert not verify_stream_token(SECRET, gen, bad, now=1000)
