"""Pyth PriceUpdateV2 over a local Solana JSON-RPC server (failover, owners, staleness), and
the live feed's background thread end to end."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import LocalServer, Request, Route, json_reply
from testkit import eventually

from pipeline.config import SymbolConfig
from pipeline.errors import BadInputError, TemporaryError
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.live import make_live_feed
from pipeline.ingest.pyth import (
    PUSH_ORACLE_PROGRAM,
    decode_price_update,
    encode_price_update,
    parse_hermes,
)
from pipeline.ingest.source_config import LiveConfig, ValidationConfig
from pipeline.ingest.sources import PythRpcSource
from pipeline.ingest.validate import TickValidator
from pipeline.records import SourceId, TickFlag

Start = Callable[[dict[str, Route]], LocalServer]
FEED = bytes.fromhex("ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d")
ACCOUNT = "7UVimffxr9ow1uXYxsr4LHAcV58mLzhmwaeKvJ1pjLiE"
S = 10**9


def test_price_update_is_decoded_in_sequence_for_both_verification_levels() -> None:
    for partial in (None, 3):
        data = encode_price_update(FEED, 14_237_000_000, 7_120_000, -8, 1_748_000_000,
                                   slot=99, partial_signatures=partial)
        assert len(data) == 134  # allocated for the longer Partial level
        price = decode_price_update(data)
        assert price.feed_id == FEED.hex()
        assert price.price == pytest.approx(142.37)
        assert price.conf_bps == pytest.approx(5.0011, rel=1e-4)
        assert (price.publish_time_s, price.posted_slot) == (1_748_000_000, 99)
        assert price.full_verification is (partial is None)
    with pytest.raises(BadInputError, match="discriminator"):
        decode_price_update(bytes(134))
    with pytest.raises(BadInputError, match="too short"):
        decode_price_update(encode_price_update(FEED, 1, 1, -8, 1)[:100])
    with pytest.raises(BadInputError, match="parsed"):
        parse_hermes({"binary": {}})


def rpc_route(data: bytes, owner: str = PUSH_ORACLE_PROGRAM) -> Route:
    def answer(request: Request) -> tuple[int, dict[str, str], bytes]:
        call = json.loads(request.body)
        assert call["method"] == "getMultipleAccounts"
        assert call["params"][1]["commitment"] == "confirmed"
        account = {"data": [base64.b64encode(data).decode(), "base64"], "executable": False,
                   "lamports": 2_000_000, "owner": owner, "rentEpoch": 0, "space": len(data)}
        return json_reply({"jsonrpc": "2.0", "id": call["id"],
                           "result": {"context": {"slot": 350, "apiVersion": "2.1.0"},
                                      "value": [account]}})
    return answer


def pyth(urls: list[str], timeout_s: float = 1.0) -> PythRpcSource:
    return PythRpcSource(urls, {ACCOUNT: 1}, {ACCOUNT: FEED.hex()}, 50.0, timeout_s)


def test_rpc_fails_over_to_the_next_endpoint(local_http: Start) -> None:
    now_s = int(time.time())
    data = encode_price_update(FEED, 14_237_000_000, 7_120_000, -8, now_s)
    down = local_http({"/": lambda _r: (503, {"Content-Type": "text/html"}, b"<html>down")})
    good = local_http({"/": rpc_route(data)})
    source = pyth([down.url, good.url])

    async def twice() -> list[list[float]]:
        try:
            first = await source.fetch_async()
            second = await source.fetch_async()
            return [[q.price for q in first], [q.price for q in second]]
        finally:
            await source.aclose()

    assert asyncio.run(twice()) == [[pytest.approx(142.37)]] * 2
    assert (source.current, source.failovers) == (1, 1)
    assert down.hits("/") == 1  # the healthy endpoint is tried first afterwards


def test_rpc_timeouts_on_every_endpoint_are_temporary(local_http: Start) -> None:
    data = encode_price_update(FEED, 1, 1, -8, 1)
    stuck = local_http({"/": lambda r: (time.sleep(1.0), rpc_route(data)(r))[1]})
    source = pyth([stuck.url, "http://127.0.0.1:9"], timeout_s=0.2)

    async def once() -> None:
        try:
            await source.fetch_async()
        finally:
            await source.aclose()

    with pytest.raises(TemporaryError, match="every RPC endpoint failed"):
        asyncio.run(once())


def test_accounts_of_other_owners_or_feeds_are_refused() -> None:
    data = encode_price_update(FEED, 14_237_000_000, 7_120_000, -8, 1)
    source = pyth(["http://127.0.0.1:9"])
    with pytest.raises(BadInputError, match="not a Pyth program"):
        source.decode([(ACCOUNT, "11111111111111111111111111111111", data)])
    other = encode_price_update(bytes(32), 14_237_000_000, 7_120_000, -8, 1)
    with pytest.raises(BadInputError, match="expected"):
        source.decode([(ACCOUNT, PUSH_ORACLE_PROGRAM, other)])
    with pytest.raises(BadInputError, match="does not exist"):
        source.decode([(ACCOUNT, None, b"")])


def symbols() -> tuple[SymbolConfig, ...]:
    return (SymbolConfig(1, "SOL/USDT", "SOL", "USDT", coingecko_id="solana",
                         pyth_feed_id="0x" + FEED.hex(), pyth_account=ACCOUNT,
                         base_mint="So11111111111111111111111111111111111111112",
                         quote_mint="Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"),)


def test_live_pyth_feed_runs_off_the_loop_and_stale_prices_are_rejected(
        local_http: Start, tmp_path: Path) -> None:
    fresh_s = int(time.time())
    publish = iter([fresh_s - 3600, fresh_s, fresh_s, fresh_s + 1])  # stale, new, same, new
    last = [fresh_s + 1]

    def answer(request: Request) -> tuple[int, dict[str, str], bytes]:
        when = next(publish, last[0])
        return rpc_route(encode_price_update(FEED, 14_237_000_000, 7_120_000, -8, when))(request)

    server = local_http({"/": answer})
    config = IngestConfig(feed="pyth", live=LiveConfig(rpc_urls=(server.url,),
                                                       poll_interval_s=0.01))
    errors: list[tuple[str, str]] = []
    feed = make_live_feed(config, symbols(), tmp_path,
                          on_error=lambda source, why: errors.append((source, why)))
    validator = TickValidator(ValidationConfig(max_age_s=60.0), [1], check_age=True)
    accepted: list[np.ndarray] = []
    try:
        def collected() -> bool:
            accepted.append(validator.validate(feed.poll(time.monotonic_ns(), 100)))
            return sum(len(a) for a in accepted) >= 2
        eventually(collected, timeout_s=10.0)
    finally:
        feed.close()
    ticks = np.concatenate(accepted)
    assert ticks["source_ts_ns"].tolist()[:2] == [fresh_s * S, (fresh_s + 1) * S]
    assert set(ticks["source_id"]) == {SourceId.PYTH}
    assert validator.rejected["stale"] == 1  # the hour-old publish_time
    assert errors == []


def test_live_feed_counts_errors_and_flags_cross_check_disagreement(
        local_http: Start, tmp_path: Path) -> None:
    updated = iter(range(1_748_000_000, 1_748_100_000))
    calls = iter([503, 200, 200, 200])
    server = local_http({
        "/simple/price": lambda _r: (json_reply({"solana": {"usd": 150.0, "last_updated_at":
                                                            next(updated)}})
                                     if next(calls, 200) == 200 else
                                     (503, {"Content-Type": "text/html"}, b"<html>busy")),
        "/swap/v1/quote": lambda _r: json_reply({"inAmount": "1000000000",
                                                 "outAmount": "142000000"}),
    })
    live = LiveConfig(coingecko_url=server.url, jupiter_url=server.url, cache_ttl_s=0.0,
                      calls_per_min=1000.0, poll_interval_s=0.01, cross_check="jupiter",
                      cross_check_max_bps=100.0)
    errors: list[tuple[str, str]] = []
    feed = make_live_feed(IngestConfig(feed="coingecko", live=live), symbols(), tmp_path,
                          on_error=lambda source, why: errors.append((source, why)))
    flagged: list[int] = []
    try:
        def suspect_seen() -> bool:
            flagged.extend(feed.poll(time.monotonic_ns(), 100)["flags"].tolist())
            return TickFlag.SUSPECT in flagged
        eventually(suspect_seen, timeout_s=10.0)
    finally:
        feed.close()
    assert ("coingecko", "unavailable") in errors  # the 503, counted, not fatal
    assert ("coingecko", "cross_check") in errors  # 150 vs 142: 5.6 % apart
