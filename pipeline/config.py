"""The pipeline's one config: a TOML file, environment overrides, per-environment defaults.

Load order: built-in defaults < environment defaults (paper trades by default, the real
money environments never do) < the TOML file < ``PIPELINE__SECTION__KEY=value`` environment
variables (values parsed as TOML, so ``PIPELINE__LEDGER__COMMITS_PER_S=400`` is a number).
Validated once, here; processes receive the frozen result.
"""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pipeline.clock import ClockConfig
from pipeline.cluster.config import ClusterConfig
from pipeline.configtools import build, require
from pipeline.control_config import ControlConfig
from pipeline.errors import ConfigError
from pipeline.executor.config import ExecutorConfig
from pipeline.ingest.config import IngestConfig
from pipeline.ledger.config import LedgerConfig
from pipeline.localnet.config import LocalnetConfig
from pipeline.strategy.config import RiskConfig, StrategyConfig

ENVIRONMENTS: Final = ("paper", "localnet", "devnet", "mainnet")
PROCESSES: Final = ("ledger", "executor", "strategy", "ingest")  # start order; stop is reverse
ENV_PREFIX: Final = "PIPELINE__"
IPC_PATH_MAX: Final = 107  # a Unix socket path, without its NUL (zmq.IPC_PATH_MAX_LEN on Linux)

_ENV_DEFAULTS: Final[Mapping[str, Mapping[str, Mapping[str, Any]]]] = {
    "paper": {"ledger": {"trade_enabled_default": True}},
    # The offline venue: real signed swaps against `pipeline localnet`, no money at stake.
    "localnet": {"executor": {"venue": "solana"}, "ledger": {"trade_enabled_default": True}},
}


@dataclass(frozen=True)
class SymbolConfig:
    """A tradable pair; ``id`` is what the records carry."""

    id: int
    name: str
    base: str
    quote: str
    # Each live source's id for this pair (empty: the source does not serve it).
    coingecko_id: str = ""  # e.g. "solana" (priced in ingest.live.coingecko_vs_currency)
    pyth_feed_id: str = ""  # hex price feed id, for Hermes and to check on-chain accounts
    pyth_account: str = ""  # base58 PriceUpdateV2 account (push oracle or receiver)
    base_mint: str = ""  # SPL mints, for Jupiter quotes
    quote_mint: str = ""
    base_decimals: int = 9
    quote_decimals: int = 6


MAX_RING_CAPACITY: Final = 1 << 22  # 4M records: 200 MB of ticks, minutes at any rate here


@dataclass(frozen=True)
class RingsConfig:
    """Ring capacities (powers of two) and where segments live."""

    ticks_capacity: int = 65536
    intents_capacity: int = 8192
    reports_capacity: int = 16384
    shm_dir: str = "/dev/shm"
    intents_backpressure_ms: float = 2.0  # the strategy drops an intent after this long
    reports_backpressure_ms: float = 50.0  # the executor keeps reports and retries after this

    def __post_init__(self) -> None:
        for name in ("ticks_capacity", "intents_capacity", "reports_capacity"):
            value = getattr(self, name)
            require(value >= 2 and value & (value - 1) == 0, f"rings.{name}", value,
                    "must be a power of two >= 2")
            require(value <= MAX_RING_CAPACITY, f"rings.{name}", value,
                    f"must be at most {MAX_RING_CAPACITY} records (segments live in "
                    "memory, in rings.shm_dir)")
        for name in ("intents_backpressure_ms", "reports_backpressure_ms"):
            require(getattr(self, name) >= 0, f"rings.{name}", getattr(self, name),
                    "must be >= 0")
        require(bool(self.shm_dir), "rings.shm_dir", self.shm_dir, "must not be empty")


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus endpoints: one per process, localhost only unless told otherwise."""

    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: {
        "ingest": 9101, "strategy": 9102, "executor": 9103, "ledger": 9104})
    # mTLS for remote scraping: all three set, or none (plain HTTP on host).
    certfile: str = ""
    keyfile: str = ""
    client_cafile: str = ""

    def __post_init__(self) -> None:
        tls = (self.certfile, self.keyfile, self.client_cafile)
        require(all(tls) or not any(tls), "metrics.certfile", self.certfile,
                "set certfile, keyfile and client_cafile together (mTLS) or none")
        require(any(tls) or self.host in ("127.0.0.1", "::1", "localhost"), "metrics.host",
                self.host, "metrics leave localhost only with mTLS (metrics.certfile ...)")
        for name, port in self.ports.items():
            require(name in PROCESSES, f"metrics.ports.{name}", port, "unknown process")
            require(0 <= port < 65536, f"metrics.ports.{name}", port, "not a port (0 = any)")


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    keep_days: int = 30
    stderr: bool = True  # also log to stderr (off under supervisor: the files are the record)

    def __post_init__(self) -> None:
        require(self.level in ("DEBUG", "INFO", "WARNING", "ERROR"), "log.level", self.level,
                "one of DEBUG, INFO, WARNING, ERROR")
        require(self.keep_days >= 1, "log.keep_days", self.keep_days, "must be >= 1")


@dataclass(frozen=True)
class CheckConfig:
    """Bootstrap checks (``pipeline check`` and at each process start)."""

    on_start: bool = True
    reach_timeout_s: float = 2.0  # RPC and feed endpoints
    min_free_disk_mb: float = 200.0

    def __post_init__(self) -> None:
        require(self.reach_timeout_s > 0, "check.reach_timeout_s", self.reach_timeout_s,
                "must be > 0")
        require(self.min_free_disk_mb >= 0, "check.min_free_disk_mb", self.min_free_disk_mb,
                "must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """How ``pipeline run`` supervises its children."""

    heartbeat_interval_s: float = 0.5
    heartbeat_timeout_s: float = 2.0
    # Silent this long, a child is declared hung (stopped or restarted). Longer than
    # heartbeat_timeout_s on purpose: trading already halts at heartbeat_timeout_s (the
    # trading state reads as stale), so a slow fsync or a busy host only pauses trading,
    # while killing a process is kept for one that is really stuck.
    hang_timeout_s: float = 10.0
    stop_timeout_s: float = 15.0
    start_timeout_s: float = 20.0
    on_hang: str = "stop"  # stop | restart
    # Scheduler slice per process, microseconds (see pipeline.sched); others keep the
    # kernel's default. Short slices let the tick path preempt the rest when it wakes.
    slice_us: dict[str, int] = field(default_factory=lambda: {
        "ingest": 100, "strategy": 100, "executor": 100})
    # CPU placement (see pipeline.sched): "auto" pins by the number of CPUs, "off" leaves
    # it to the kernel; cpus pins the processes it names, whatever pin says.
    pin: str = "auto"
    cpus: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(0 < self.heartbeat_interval_s < self.heartbeat_timeout_s,
                "run.heartbeat_interval_s", self.heartbeat_interval_s,
                "must be positive and below run.heartbeat_timeout_s")
        require(math.isfinite(self.hang_timeout_s)
                and self.hang_timeout_s >= self.heartbeat_timeout_s,
                "run.hang_timeout_s", self.hang_timeout_s,
                "must be finite and at least run.heartbeat_timeout_s")
        for name in ("stop_timeout_s", "start_timeout_s"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, f"run.{name}", value,
                    "must be a finite number of seconds > 0")
        require(self.on_hang in ("stop", "restart"), "run.on_hang", self.on_hang,
                "stop or restart")
        for process, value in self.slice_us.items():
            require(process in PROCESSES, f"run.slice_us.{process}", value,
                    f"not a process ({', '.join(PROCESSES)})")
            require(isinstance(value, int) and 100 <= value <= 100_000,
                    f"run.slice_us.{process}", value,
                    "must be an integer from 100 to 100000 (the kernel's range)")
        require(self.pin in ("auto", "off"), "run.pin", self.pin, "auto or off")
        for process, cpus in self.cpus.items():
            require(process in PROCESSES, f"run.cpus.{process}", cpus,
                    f"not a process ({', '.join(PROCESSES)})")
            require(isinstance(cpus, tuple) and bool(cpus)
                    and all(type(c) is int and 0 <= c < 4096 for c in cpus),
                    f"run.cpus.{process}", cpus, "must be a non-empty list of CPU numbers")



@dataclass(frozen=True)
class PipelineConfig:
    env: str = "paper"
    data_dir: str = ""  # empty: ./var/<env>
    symbols: tuple[SymbolConfig, ...] = (SymbolConfig(1, "SOL/USDT", "SOL", "USDT"),)
    rings: RingsConfig = field(default_factory=RingsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    run: RunConfig = field(default_factory=RunConfig)
    check: CheckConfig = field(default_factory=CheckConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)  # NTP check gating trading
    ingest: IngestConfig = field(default_factory=IngestConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    localnet: LocalnetConfig = field(default_factory=LocalnetConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # shards; none: one host
    source: str = "<defaults>"  # where it was loaded from, for status and logs

    def __post_init__(self) -> None:
        require(self.env in ENVIRONMENTS, "env", self.env, f"one of {', '.join(ENVIRONMENTS)}")
        ids = [s.id for s in self.symbols]
        require(len(ids) == len(set(ids)), "symbols", ids, "symbol ids must be unique")
        require(self.ingest.symbol_id in ids, "ingest.symbol_id", self.ingest.symbol_id,
                "not a configured symbol")
        self.cluster.check_symbols({s.name: s.id for s in self.symbols})
        if self.env in ("devnet", "mainnet"):
            require(self.executor.venue != "paper", "executor.venue", self.executor.venue,
                    f"{self.env} must not trade on the paper venue")
        if self.env == "paper":
            require(self.executor.venue == "paper", "executor.venue", self.executor.venue,
                    "the paper environment trades only on the paper venue")
        if self.control.transport == "ipc":
            sockets = [self.paths.run_dir / f"{name}.events" for name in PROCESSES]
            longest = max(len(str(path).encode()) for path in sockets)
            require(longest <= IPC_PATH_MAX, "data_dir", str(self.paths.data_dir),
                    f"too long for the ipc control sockets in its run/ directory ({longest} "
                    f"bytes, the kernel takes {IPC_PATH_MAX}): use a shorter path")
        # Between two heartbeats the ledger may wait for a lock twice (a commit and a
        # control request), so two waits and one interval must fit in the timeout.
        budget_s = (self.run.heartbeat_timeout_s - self.run.heartbeat_interval_s) / 2
        require(self.ledger.busy_timeout_ms / 1000 <= budget_s, "ledger.busy_timeout_ms",
                self.ledger.busy_timeout_ms,
                f"must be at most {budget_s * 1000:.0f} ms, half of run.heartbeat_timeout_s "
                f"({self.run.heartbeat_timeout_s} s) minus run.heartbeat_interval_s "
                f"({self.run.heartbeat_interval_s} s): a longer lock wait would get the "
                "ledger declared hung")

    @property
    def paths(self) -> Paths:
        return Paths.for_config(self)

    def symbol_table(self) -> dict[int, tuple[str, str, str]]:
        return {s.id: (s.name, s.base, s.quote) for s in self.symbols}


@dataclass(frozen=True)
class Paths:
    """Every file location derived from the data directory, so environments never share one."""

    data_dir: Path
    database: Path
    run_dir: Path
    log_dir: Path
    ring_prefix: str

    @classmethod
    def for_config(cls, config: PipelineConfig) -> Paths:
        data_dir = Path(config.data_dir or f"var/{config.env}").resolve()
        # The ring names carry the environment and a digest of the data directory: two
        # pipelines on one host never share rings, one pipeline restarted finds its own.
        digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:8]
        return cls(data_dir=data_dir, database=data_dir / f"ledger-{config.env}.sqlite",
                   run_dir=data_dir / "run", log_dir=data_dir / "logs",
                   ring_prefix=f"pl-{config.env}-{digest}")


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as paper or ema_cross


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``PIPELINE__A__B=v`` becomes ``{"a": {"b": v}}``."""
    table: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX):].lower().split("__")
        node = table
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = _parse_env_value(text)
    return table


def load_config(path: Path | None = None, *, environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Read, merge and validate; raises ConfigError naming the key and value at fault."""
    table: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as handle:
                table = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError("--config", str(path), "file not found") from None
        except OSError as exc:  # a directory, no permission, an I/O error
            raise ConfigError("--config", str(path),
                              f"cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:  # tomllib decodes before it parses
            raise ConfigError("--config", str(path), f"not UTF-8 text: {exc.reason} at byte "
                              f"{exc.start}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", str(path), f"invalid TOML: {exc}") from None
        except RecursionError:  # arrays nested thousands deep
            raise ConfigError("--config", str(path), "invalid TOML: nested too deeply") \
                from None
    table = _deep_merge(table, env_overrides(os.environ if environ is None else environ))
    table = _deep_merge(table, overrides or {})
    env = table.get("env", "paper")
    defaults = {k: dict(v) for k, v in _ENV_DEFAULTS.get(str(env), {}).items()}
    table = _deep_merge(defaults, table)
    table["source"] = str(path) if path else "<defaults>"
    if "symbols" in table and isinstance(table["symbols"], list):
        table["symbols"] = [dict(s) if isinstance(s, Mapping) else s for s in table["symbols"]]
    return build(PipelineConfig, table)
