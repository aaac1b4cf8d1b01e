"""Section f: backtest speed, candles per second through a strategy and the risk engine.

There is no ``pipeline backtest`` command in this build yet, so this measures its core
directly: the bundled 1-minute candles turned into ticks (:func:`candles_to_ticks`, four per
candle; the 4,320 bundled candles repeated ``repeat`` times so one pass
lasts long enough to time), fed through ``on_ticks`` of each built-in strategy and the risk engine's
``on_ticks`` and ``check`` in batches of 65,536 ticks, as a backtest would. Candles/s counts
the candles behind the ticks; the conversion is included in the time.
"""

from __future__ import annotations

import time
from typing import Any, Final

import numpy as np

from pipeline.ingest.candles import candles_to_ticks, load_bundled
from pipeline.records import SourceId, TickFlag
from pipeline.strategy.config import RiskConfig
from pipeline.strategy.loader import BUILT_INS
from pipeline.strategy.risk import RiskEngine

BATCH_TICKS: Final = 65_536


def backtest_trial(strategy_name: str, repeat: int = 25) -> float:
    """Candles per second of one pass over the bundled candles, repeated."""
    candles = np.tile(load_bundled(), repeat)
    strategy: Any = BUILT_INS[strategy_name]
    strategy = strategy(symbol_id=1)  # the built-ins take symbol_id (see the loader)
    risk = RiskEngine(RiskConfig(max_orders_per_s=1e9))
    started = time.perf_counter()
    ticks = candles_to_ticks(candles, 1, SourceId.REPLAY, TickFlag.REPLAY)
    ticks["seq"] = np.arange(len(ticks), dtype=np.uint64)
    ticks["ingest_ns"] = ticks["source_ts_ns"]
    for start in range(0, len(ticks), BATCH_TICKS):
        batch = ticks[start:start + BATCH_TICKS]
        risk.on_ticks(batch)
        intents = strategy.on_ticks(batch)
        if len(intents):
            risk.check(intents, int(batch["source_ts_ns"][-1]))
    return len(candles) / (time.perf_counter() - started)
