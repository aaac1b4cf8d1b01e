"""Re-reading the config of a running process (SIGHUP or the ``reload`` control command).

The new config is loaded exactly as at start (file, environment, command-line overrides)
and validated as a whole; a config that fails validation or cannot be read (a directory, no
permission, not UTF-8) is refused with a logged error and counted, and the old one stays in
force: a bad edit must never stop a process that is trading. A valid config is offered to
the service, which applies the sections it can change live (strategy parameters, risk
limits, feed settings, commit pacing) between two steps of its loop, so no tick or order is
dropped. Sections that only
take effect at start (rings, paths, metrics ports, the control transport...) keep their old
values and are reported as ``restart_required``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pipeline.config import PipelineConfig
from pipeline.control import ControlError
from pipeline.errors import BadInputError, ConfigError

# control keys every process can take live: the ledger reads them on each kill-switch request.
_LIVE_CONTROL_KEYS = frozenset({"signers", "enable_threshold", "max_message_ttl_s",
                                "request_timeout_s", "request_retries"})
_IGNORED = frozenset({"source"})


class Reloadable(Protocol):
    live_sections: Sequence[str]  # top-level config sections this service applies live

    def reload(self, config: PipelineConfig) -> None:
        """Apply ``config``'s live sections atomically, or raise ConfigError to refuse."""
        ...


def config_digest(config: PipelineConfig) -> str:
    """A short digest of the effective config, so operators can compare processes."""
    text = repr(dataclasses.replace(config, source=""))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def changed_sections(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    """Top-level config fields whose values differ."""
    return [f.name for f in dataclasses.fields(PipelineConfig)
            if f.name not in _IGNORED and getattr(old, f.name) != getattr(new, f.name)]


def _control_is_live(old: PipelineConfig, new: PipelineConfig) -> bool:
    differ = {f.name for f in dataclasses.fields(old.control)
              if getattr(old.control, f.name) != getattr(new.control, f.name)}
    return differ <= _LIVE_CONTROL_KEYS


class ConfigReloader:
    """Owns the process's current config and its version; one instance per process."""

    def __init__(self, config: PipelineConfig, loader: Callable[[], PipelineConfig] | None,
                 service: Reloadable, log: logging.Logger,
                 on_refused: Callable[[], None] | None = None) -> None:
        self.config = config
        self.version = 1
        self.refused = 0  # reloads refused since start (a metric counts them too)
        self._loader = loader
        self._service = service
        self._log = log
        self._on_refused = on_refused or (lambda: None)

    def reload(self, trigger: str) -> dict[str, Any]:
        """Load, validate and apply; raises ControlError("invalid_config") keeping the old."""
        if self._loader is None:
            raise ControlError("not_supported", "this process was started without a config "
                               "loader; restart it to change its config")
        try:
            new = self._loader()
        except ConfigError as exc:
            return self._refuse(trigger, str(exc))
        except OSError as exc:  # the loader maps these; a file the config names may not
            return self._refuse(trigger, f"cannot read the config: {exc}")
        old = self.config
        changed = changed_sections(old, new)
        if "control" in changed and _control_is_live(old, new):
            live_control = ["control"]
            changed.remove("control")
        else:
            live_control = []
        applied = [name for name in changed if name in self._service.live_sections]
        kept = {name: getattr(old, name) for name in changed if name not in applied}
        try:
            merged = dataclasses.replace(new, **kept)  # validates the mix as a whole
            if applied:
                self._service.reload(merged)
        except (ConfigError, BadInputError) as exc:
            return self._refuse(trigger, str(exc))
        self.config = merged
        applied += live_control
        if applied:
            self.version += 1
        result = {"applied": sorted(applied), "restart_required": sorted(kept),
                  "config_version": self.version, "config_digest": config_digest(self.config)}
        self._log.info("config reloaded", extra={"event": "config.reloaded",
                                                 "trigger": trigger, **result})
        if kept:
            self._log.warning("config sections %s changed but take effect only after a "
                              "restart", ", ".join(sorted(kept)),
                              extra={"event": "config.restart_required"})
        return result

    def _refuse(self, trigger: str, reason: str) -> dict[str, Any]:
        self.refused += 1
        self._on_refused()
        self._log.error("config reload refused, the old config stays in force: %s", reason,
                        extra={"event": "config.reload_refused", "trigger": trigger})
        raise ControlError("invalid_config", f"reload refused, old config kept: {reason}")
