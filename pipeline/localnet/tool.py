"""``pipeline localnet``: run the offline Solana venue until stopped (SIGTERM or Ctrl-C).

Builds the chain, loads or creates the trader and maker accounts, serves JSON-RPC and the
Jupiter-shaped maker on one local port, writes the manifest the executor reads, and on an
orderly stop saves the accounts so the next start continues from the same balances.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import uuid
from types import FrameType

from pipeline.config import PipelineConfig
from pipeline.lineage import LAUNCHER_GONE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="listen port (default localnet.port; 0: any)")


def run(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipeline.localnet.chain import LocalChain
    from pipeline.localnet.maker import Maker, MakerConfig
    from pipeline.localnet.manifest import Manifest
    from pipeline.localnet.prices import TickPrices
    from pipeline.localnet.rpc import RpcMethods
    from pipeline.localnet.server import LocalnetServer
    from pipeline.localnet.world import open_world, save_world
    from pipeline.logs import setup_logging
    from pipeline.ports import Ports

    paths = config.paths
    log = setup_logging("localnet", config.env, paths.log_dir, level=config.log.level,
                        keep_days=config.log.keep_days, to_stderr=True)
    settings = config.localnet
    decimals: dict[str, int] = {}
    for symbol in config.symbols:
        decimals[symbol.base] = symbol.base_decimals
        decimals[symbol.quote] = symbol.quote_decimals
    chain = LocalChain(window_blocks=settings.window_blocks)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    world = open_world(chain, paths.data_dir, decimals, settings.trader_balances,
                       settings.maker_balances)
    ports = Ports(config, "localnet", run_id=uuid.uuid4(), log=log)
    prices = TickPrices(lambda: ports.reader("ticks"),
                        {(s.base, s.quote): s.id for s in config.symbols})
    maker = Maker(chain, world, MakerConfig(spread_bps=settings.spread_bps,
                                            quote_ttl_s=settings.quote_ttl_s),
                  prices.price_of, {s.name: (s.base, s.quote) for s in config.symbols})
    port = settings.port if args.port is None else args.port
    server = LocalnetServer(chain, RpcMethods(chain, world.accounts), maker, host=settings.host,
                            port=port, block_interval_s=settings.block_interval_ms / 1000)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(LAUNCHER_GONE, on_signal)  # `pipeline run` was killed: save and stop
    server.start()
    manifest = Manifest(url=server.url, trader_keypair=str(world.trader_key_path),
                        trader=str(world.trader.pubkey()), maker=str(world.maker.pubkey()),
                        mints={a.name: (str(a.mint), a.decimals) for a in world.assets.values()},
                        pid=os.getpid())
    path = manifest.write(paths.run_dir)
    log.info("localnet serving on %s", server.url,
             extra={"event": "localnet.started", "url": server.url,
                    "trader": manifest.trader, "manifest": str(path)})
    stop.wait()
    server.stop()
    save_world(chain, world, paths.data_dir)
    path.unlink(missing_ok=True)
    prices.close()
    log.info("localnet stopped; accounts saved",
             extra={"event": "localnet.stopped", "height": chain.height,
                    "expired_dropped": chain.dropped_expired})
    return 0
