"""HTTPS to the checked address: the name goes in TLS SNI and the certificate is checked against it."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alerts import webhooks


def _certificate(subject: str, issuer_name: str, public_key, signing_key, *, ca: bool, san: str | None = None):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture
def tls_receiver(tmp_path, settings, monkeypatch):
    """A TLS receiver on 127.0.0.1 with a certificate for hooks.example.org from a test CA, and the
    name resolving to it; returns (port, the names resolved and the names the server saw in SNI)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test hospital CA", "Test hospital CA", ca_key.public_key(), ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(
        "hooks.example.org", "Test hospital CA", leaf_key.public_key(), ca_key, ca=False, san="hooks.example.org"
    )
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = True
    settings.ALERTS_WEBHOOK_CA_BUNDLE = str(tmp_path / "ca.pem")
    seen_sni: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    context.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    system = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        seen_sni.append(f"resolved {host}")
        if host in ("hooks.example.org", "other.example.org"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return system(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield server.server_address[1], seen_sni
    server.shutdown()
    server.server_close()


def test_https_goes_to_the_checked_address_with_the_name_in_sni_and_the_certificate_checked(tls_receiver):
    port, seen_sni = tls_receiver
    answer = webhooks.post(f"https://hooks.example.org:{port}/hook", body=b"{}", headers={})
    assert (answer.status_code, answer.error) == (204, "")
    # One resolution of the name (then the checked address, a literal): no rebinding window.
    assert seen_sni == ["resolved hooks.example.org", "resolved 127.0.0.1", "hooks.example.org"]


def test_a_certificate_for_another_name_is_refused(tls_receiver):
    port, _seen = tls_receiver
    answer = webhooks.post(f"https://other.example.org:{port}/hook", body=b"{}", headers={})
    assert answer.status_code is None
    assert answer.error == "TLS error (certificate or handshake)"


def test_a_certificate_from_an_unknown_authority_is_refused(tls_receiver, settings):
    port, _seen = tls_receiver
    settings.ALERTS_WEBHOOK_CA_BUNDLE = ""  # the system's store does not know the test CA
    answer = webhooks.post(f"https://hooks.example.org:{port}/hook", body=b"{}", headers={})
    assert answer.error == "TLS error (certificate or handshake)"
