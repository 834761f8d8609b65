"""A real SMTP server for tests: aiosmtpd on a free loopback port, recording what it accepts.

:func:`running_smtp` (what a module's ``smtp_server`` fixture yields from) → a plain
:class:`SmtpCapture`; ``SmtpCapture(tls=…)`` starts one
with STARTTLS (``"starttls"``) or implicit TLS (``"tls"``) under a throw-away self-signed
certificate (:func:`self_signed`), which :attr:`SmtpCapture.client_context` trusts.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, as PEM files in ``directory``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        with self.cond:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
            self.cond.notify_all()
        return "250 OK"


class SmtpCapture:
    """An SMTP server in a thread; ``messages`` are ``(mail_from, rcpt_tos, EmailMessage)``."""

    def __init__(self, workdir: Path, tls: str | None = None,
                 login: tuple[str, str] | None = None) -> None:
        self.recorder = _Recorder()
        self.port = free_port()
        self.tls = tls
        self.logins: list[str] = []
        kwargs: dict[str, Any] = {}
        self.client_context: ssl.SSLContext | None = None
        if tls:
            cert, key = self_signed(workdir)
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_context.load_cert_chain(cert, key)
            self.client_context = ssl.create_default_context(cafile=str(cert))
            if tls == "starttls":
                kwargs.update(tls_context=server_context, require_starttls=True)
            else:
                kwargs.update(ssl_context=server_context)
        if login is not None:
            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                             data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and \
                    (data.login.decode(), data.password.decode()) == login
                if ok:
                    self.logins.append(data.login.decode())
                return AuthResult(success=ok)

            # aiosmtpd sees TLS only after STARTTLS; implicit TLS is TLS from the first byte
            kwargs.update(authenticator=authenticate, auth_require_tls=tls == "starttls")
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port,
                                     ready_timeout=10, **kwargs)

    def start(self) -> SmtpCapture:
        if self.tls == "tls":
            # the controller's readiness probe would wrap its socket with the server's context
            context = self.client_context
            assert context is not None

            def trigger() -> None:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw, \
                        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.recv(1024)  # the greeting

            self.controller._trigger_server = trigger  # type: ignore[method-assign]
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[tuple[str, list[str], EmailMessage]]:
        with self.recorder.cond:
            return list(self.recorder.messages)

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """The first ``count`` messages, waiting up to ``timeout`` for them."""
        deadline = time.monotonic() + timeout
        with self.recorder.cond:
            while len(self.recorder.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} message(s) expected within {timeout} s, "
                                         f"got {len(self.recorder.messages)}")
                self.recorder.cond.wait(left)
            return [m for _, _, m in self.recorder.messages[:count]]

    def url(self, scheme: str = "smtp", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}"


def running_smtp(tmp_path: Path) -> Iterator[SmtpCapture]:
    """The body of a test module's ``smtp_server`` fixture: a plain server, stopped after."""
    server = SmtpCapture(tmp_path).start()
    yield server
    server.stop()


def bodies(message: EmailMessage) -> tuple[str, str]:
    """``(plain text, html)`` of a digest email."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None, "a digest has a text and an HTML part"
    return text.get_content(), html.get_content()
