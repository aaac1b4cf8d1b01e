"""Backtests: the live strategy, risk and paper-fill code over recorded market data."""
