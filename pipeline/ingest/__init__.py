"""Ingest: turn a market-data source (replayed candles, a synthetic walk) into paced ticks.

The ingest process (``process.py``) asks a :class:`~pipeline.ingest.feed.Feed` for the
ticks due by now, stamps ``seq`` and ``ingest_ns`` and publishes them on the tick ring.
"""
