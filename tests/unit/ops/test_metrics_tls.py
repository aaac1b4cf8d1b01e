"""mTLS on /metrics: with certificates made here, a scraper without a client certificate
(or with one from another CA) is refused, one signed by the configured CA is served."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, Gauge

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.metrics import serve

Issued = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _issue(name: str, issuer: Issued | None, *, ca: bool = False, server: bool = False) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256()), key


def _write(directory: Path, stem: str, issued: Issued) -> tuple[Path, Path]:
    cert, key = issued
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    ca = _issue("pipeline test CA", None, ca=True)
    other_ca = _issue("some other CA", None, ca=True)
    paths = {"ca": _write(directory, "ca", ca)[0]}
    paths["server"], paths["server_key"] = _write(directory, "server",
                                                  _issue("metrics", ca, server=True))
    paths["client"], paths["client_key"] = _write(directory, "prometheus",
                                                  _issue("prometheus", ca))
    paths["stranger"], paths["stranger_key"] = _write(directory, "stranger",
                                                      _issue("stranger", other_ca))
    return paths


@pytest.fixture(scope="module")
def tls_port(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> int:
    registry = CollectorRegistry()
    Gauge("pipeline_tls_probe", "served over mTLS", registry=registry).set(7)
    return serve(registry, "127.0.0.1", 0, tmp_path_factory.mktemp("run") / "x.metrics-port",
                 certfile=str(pki["server"]), keyfile=str(pki["server_key"]),
                 client_cafile=str(pki["ca"]))


def _get(port: int, pki: dict[str, Path], client: str | None) -> str:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if client is not None:
        context.load_cert_chain(str(pki[client]), str(pki[f"{client}_key"]))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=context,
                                timeout=5) as response:
        return str(response.read().decode())


def test_a_client_with_a_certificate_from_our_ca_is_served(tls_port: int,
                                                            pki: dict[str, Path]) -> None:
    assert "pipeline_tls_probe 7.0" in _get(tls_port, pki, "client")


@pytest.mark.parametrize("client", [None, "stranger"])
def test_a_client_without_our_certificate_is_refused(tls_port: int, pki: dict[str, Path],
                                                     client: str | None) -> None:
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        _get(tls_port, pki, client)


def test_plain_http_is_refused_on_the_tls_port(tls_port: int) -> None:
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{tls_port}/metrics", timeout=5)


def test_metrics_leave_localhost_only_with_mtls() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.host"):
        load_config(environ={}, overrides={"metrics": {"host": "0.0.0.0"}})
    with pytest.raises(ConfigError, match="together"):
        load_config(environ={}, overrides={"metrics": {"certfile": "/x.pem"}})
