"""``pipeline bench``: the rings against the alternatives, tick-to-order latency, throughput,
memory and backtest speed, measured side by side in one run (see :mod:`pipeline.bench.cli`).
"""
