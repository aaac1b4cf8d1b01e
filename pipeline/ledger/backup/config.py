"""Where and how often the ledger ships encrypted backups (``[ledger.backup]``).

Secrets never live in the config: it names a key file or an environment variable holding
the keyring (see :mod:`pipeline.ledger.backup.crypto`), and S3 credentials come from boto3's
usual chain (environment, shared credentials file, instance role).
"""

from __future__ import annotations

import dataclasses
import math
import re

from pipeline.configtools import require

SSE_MODES = ("", "AES256", "aws:kms")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclasses.dataclass(frozen=True)
class BackupConfig:
    """Off by default; ``enabled = true`` needs a bucket and a key source."""

    enabled: bool = False
    bucket: str = ""
    prefix: str = "ledger"  # objects go under <prefix>/<env>/
    endpoint_url: str = ""  # empty: AWS; e.g. http://127.0.0.1:9000 for MinIO or moto
    region: str = "us-east-1"
    sse: str = ""  # server-side encryption header on top of ours: "", AES256 or aws:kms
    key_file: str = ""  # keyring file, one "key_id=base64(32 bytes)" per line, last is current
    key_env: str = "PIPELINE_BACKUP_KEYS"  # or the same, comma-separated, in this variable
    snapshot_interval_s: float = 3600.0  # full snapshot
    increment_interval_s: float = 60.0  # the recovery point objective
    retry_initial_s: float = 1.0  # back-off after a failed backup, doubling
    retry_max_s: float = 30.0

    def __post_init__(self) -> None:
        p = "ledger.backup."
        if self.enabled:
            require(bool(_BUCKET.match(self.bucket)), p + "bucket", self.bucket,
                    "must be a valid S3 bucket name (3-63 lowercase letters, digits, . or -)")
            require(bool(self.key_file or self.key_env), p + "key_file", self.key_file,
                    "set key_file or key_env so backups can be encrypted")
        require(self.prefix == "" or not self.prefix.startswith("/"), p + "prefix",
                self.prefix, "must not start with /")
        require(self.endpoint_url == "" or self.endpoint_url.startswith(("http://", "https://")),
                p + "endpoint_url", self.endpoint_url, "must be an http:// or https:// URL")
        require(self.sse in SSE_MODES, p + "sse", self.sse, f"one of {SSE_MODES}")
        for name in ("snapshot_interval_s", "increment_interval_s", "retry_initial_s",
                     "retry_max_s"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, p + name, value,
                    "must be a positive number of seconds")
        require(self.increment_interval_s <= self.snapshot_interval_s,
                p + "increment_interval_s", self.increment_interval_s,
                "must not exceed snapshot_interval_s")
