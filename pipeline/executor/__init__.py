"""Executor: hand risk-checked intents to a venue and turn its answers into reports.

The venue behind the executor is pluggable (:class:`~pipeline.executor.venue.Venue`); the
paper venue (:mod:`pipeline.executor.paper`) fills against the tick stream.
"""
