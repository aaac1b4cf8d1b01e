"""The strategy package: strategies that turn ticks into order intents, and pre-trade risk.

How to write a strategy: see :mod:`pipeline.strategy.api`.
"""
