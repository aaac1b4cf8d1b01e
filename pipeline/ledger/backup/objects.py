"""Backup objects in S3: names, the envelope around each payload, upload and download.

Layout under ``<prefix>/<env>/``::

    snapshots/<chain>.snapshot                full database copy; <chain> is its UTC time
    increments/<chain>/<seq:08d>.increment    changes since the previous object of the chain

Each object's plaintext is ``zlib(len(manifest) u32 | manifest JSON | body)``; the manifest
carries the kind, times, schema version, row counts and the body's SHA-256. The object is
then sealed with AES-256-GCM (:mod:`.crypto`); its metadata holds the key id, the key
check value and the SHA-256 of the stored bytes, so a download is verified before it is
even decrypted. Names sort by time, so listing needs no downloads.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.ledger.backup.config import BackupConfig
from pipeline.ledger.backup.crypto import BackupCryptoError, Keyring

TIME_FORMAT: Final = "%Y%m%dT%H%M%S.%fZ"
_LEN: Final = struct.Struct(">I")


def chain_id(moment: datetime) -> str:
    """The sortable name of a snapshot taken at ``moment`` (aware or naive UTC)."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT) if moment.tzinfo else \
        moment.strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """A chain id or an ISO 8601 time as an aware UTC datetime."""
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class ObjectRef:
    """One backup object as listed: which chain, which position, its S3 key."""

    kind: str  # "snapshot" or "increment"
    chain: str
    seq: int  # 0 for the snapshot
    key: str
    size_bytes: int


def pack(manifest: dict[str, Any], body: bytes) -> bytes:
    """Manifest (with the body's checksum added) and body, compressed."""
    manifest = {**manifest, "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_bytes": len(body)}
    header = json.dumps(manifest, sort_keys=True).encode()
    return zlib.compress(_LEN.pack(len(header)) + header + body, 6)


def unpack(plaintext: bytes, key: str) -> tuple[dict[str, Any], bytes]:
    """Inverse of :func:`pack`, verifying the body checksum."""
    try:
        raw = zlib.decompress(plaintext)
        (size,) = _LEN.unpack_from(raw)
        manifest = json.loads(raw[_LEN.size:_LEN.size + size])
    except (zlib.error, struct.error, ValueError) as exc:
        raise BackupCryptoError(f"{key}: payload is damaged ({exc})") from None
    body = raw[_LEN.size + size:]
    if hashlib.sha256(body).hexdigest() != manifest.get("body_sha256"):
        raise BackupCryptoError(f"{key}: body checksum does not match its manifest")
    return manifest, body


class BackupStore:
    """Upload and download sealed objects; the boto3 client is injected or built from config."""

    def __init__(self, config: BackupConfig, env: str, keyring: Keyring,
                 client: Any = None) -> None:
        self._config = config
        self._keyring = keyring
        self.root = "/".join(p for p in (config.prefix.strip("/"), env) if p) + "/"
        self._client = client if client is not None else make_client(config)

    @property
    def bucket(self) -> str:
        return self._config.bucket

    def head_taken_at(self, key: str) -> str:
        """The ``taken-at`` metadata of an object, without downloading it."""
        head = self._client.head_object(Bucket=self._config.bucket, Key=key)
        return str(head.get("Metadata", {}).get("taken-at", ""))

    def snapshot_key(self, chain: str) -> str:
        return f"{self.root}snapshots/{chain}.snapshot"

    def increment_key(self, chain: str, seq: int) -> str:
        return f"{self.root}increments/{chain}/{seq:08d}.increment"

    def put(self, key: str, manifest: dict[str, Any], body: bytes) -> int:
        """Seal and upload; returns the stored size in bytes."""
        sealed = self._keyring.seal(pack(manifest, body), key)
        extra: dict[str, Any] = {}
        if self._config.sse:
            extra["ServerSideEncryption"] = self._config.sse
        self._client.put_object(
            Bucket=self._config.bucket, Key=key, Body=sealed.body,
            Metadata={"key-id": sealed.key_id, "key-check": sealed.key_check,
                      "sha256": hashlib.sha256(sealed.body).hexdigest(),
                      "kind": str(manifest["kind"]), "taken-at": str(manifest["taken_at"])},
            **extra)
        return len(sealed.body)

    def get(self, key: str) -> tuple[dict[str, Any], bytes]:
        """Download, verify the stored checksum, decrypt and unpack."""
        response = self._client.get_object(Bucket=self._config.bucket, Key=key)
        body = response["Body"].read()
        meta = response.get("Metadata", {})
        if hashlib.sha256(body).hexdigest() != meta.get("sha256"):
            raise BackupCryptoError(f"{key}: stored bytes do not match their SHA-256 "
                                    "(corrupted in storage or transfer)")
        plaintext = self._keyring.open(body, key, meta.get("key-id", ""),
                                       meta.get("key-check", ""))
        return unpack(plaintext, key)

    def list(self) -> list[ObjectRef]:
        """Every backup object under this environment's prefix, in name (= time) order."""
        refs = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._config.bucket, Prefix=self.root):
            for item in page.get("Contents", []):
                ref = _ref(item["Key"][len(self.root):], item["Key"], int(item["Size"]))
                if ref is not None:
                    refs.append(ref)
        return sorted(refs, key=lambda r: (r.chain, r.seq))


def _ref(relative: str, key: str, size: int) -> ObjectRef | None:
    parts = relative.split("/")
    if len(parts) == 2 and parts[0] == "snapshots" and parts[1].endswith(".snapshot"):
        return ObjectRef("snapshot", parts[1].removesuffix(".snapshot"), 0, key, size)
    if len(parts) == 3 and parts[0] == "increments" and parts[2].endswith(".increment"):
        seq = parts[2].removesuffix(".increment")
        if seq.isdigit():
            return ObjectRef("increment", parts[1], int(seq), key, size)
    return None  # not ours: ignored


def make_client(config: BackupConfig) -> Any:
    """A boto3 S3 client; short timeouts because the agent retries on its own schedule."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=config.endpoint_url or None, region_name=config.region,
        config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}))
