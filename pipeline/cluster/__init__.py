"""Shards: a config maps each market (venue, symbol) to a shard and each shard to a host.

Each host runs the four processes for its shards only, with its own database and kill
word, so nothing on the tick-to-order path crosses a host; the shard id is inside every
client order id (:mod:`pipeline.ids`), so ids are unique across hosts. This ``__init__``
imports nothing: :mod:`pipeline.config` imports :mod:`pipeline.cluster.config`, and
:mod:`pipeline.cluster.shards` reads a loaded :class:`~pipeline.config.PipelineConfig`.
"""
