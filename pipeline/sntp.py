"""A minimal SNTP (RFC 4330) client: how far is this host's wall clock from an NTP server?

Used by the bootstrap checks. Fill timestamps, order expiry and blockhash lifetimes depend on
the wall clock, so a host that drifted must be noticed before it trades. One request, one
answer, validated (server mode, synchronised, our own timestamp echoed back).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Final

NTP_EPOCH_OFFSET_S: Final = 2_208_988_800  # 1900-01-01 to 1970-01-01
_PACKET: Final = struct.Struct("!BBbb11I")
_MODE_CLIENT: Final = 3
_MODE_SERVER: Final = 4
_VERSION: Final = 4
_LEAP_UNSYNCHRONISED: Final = 3


class SntpError(Exception):
    """The server did not answer, or answered with something we cannot trust."""


@dataclass(frozen=True)
class SntpResult:
    offset_s: float  # server clock minus ours (positive: we are behind)
    delay_s: float  # round trip, minus the server's processing time
    stratum: int


def to_ntp(unix_s: float) -> tuple[int, int]:
    """Unix seconds to the 64-bit NTP timestamp (seconds, fraction)."""
    ntp = unix_s + NTP_EPOCH_OFFSET_S
    seconds = int(ntp)
    return seconds, int((ntp - seconds) * 2**32) & 0xFFFFFFFF


def from_ntp(seconds: int, fraction: int) -> float:
    return seconds - NTP_EPOCH_OFFSET_S + fraction / 2**32


def query(host: str, port: int = 123, timeout_s: float = 1.0) -> SntpResult:
    """Ask one server once; raises SntpError on no answer or an untrustworthy one."""
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except OSError as exc:
        raise SntpError(f"cannot resolve {host}: {exc}") from exc
    with socket.socket(address[0], socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sent_s, sent_f = to_ntp(time.time())
        request = bytearray(48)
        request[0] = (_VERSION << 3) | _MODE_CLIENT
        struct.pack_into("!II", request, 40, sent_s, sent_f)
        t1 = from_ntp(sent_s, sent_f)
        try:
            sock.sendto(bytes(request), address[4])
            data, _peer = sock.recvfrom(512)
        except OSError as exc:  # includes the timeout
            raise SntpError(f"no answer from {host}:{port} within {timeout_s} s: {exc}") from exc
        t4 = time.time()
    if len(data) < 48:
        raise SntpError(f"{host}: short answer ({len(data)} bytes)")
    fields = _PACKET.unpack_from(data)
    leap, mode, stratum = fields[0] >> 6, fields[0] & 0x7, fields[1]
    if mode != _MODE_SERVER or leap == _LEAP_UNSYNCHRONISED or not 1 <= stratum <= 15:
        raise SntpError(f"{host}: not a synchronised server (mode {mode}, leap {leap}, "
                        f"stratum {stratum})")
    words = fields[4:]
    if (words[5], words[6]) != (sent_s, sent_f):
        raise SntpError(f"{host}: answer does not echo our request (spoofed or stale)")
    t2 = from_ntp(words[7], words[8])
    t3 = from_ntp(words[9], words[10])
    return SntpResult(offset_s=((t2 - t1) + (t3 - t4)) / 2, delay_s=(t4 - t1) - (t3 - t2),
                      stratum=stratum)
