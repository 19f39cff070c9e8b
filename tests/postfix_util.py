"""A real, throwaway Postfix for the tests and the benchmarks: a private instance in a temporary folder.

`find_postfix()` provides Debian's `postfix` (installed with apt-get when running as root, like browser_util.py
installs Chromium, preseeded "No configuration" so that no system Postfix is set up, and any system Postfix the
install started is stopped again). `Postfix.start()` writes its own main.cf and master.cf into a temporary folder
(queue, data and log there too; no chroot, no syslog) and runs the master listening only on 127.0.0.1 on a free
port; `stop()` shuts it down and removes everything.

Defaults: every transport `discard:` (nothing leaves the machine; the message is still queued, fsynced and removed
like real mail), relaying for 127.0.0.0/8, STARTTLS offered with a self-signed certificate when one is given, the
log in `log_path`. `settings` overrides any main.cf parameter, e.g. to refuse one recipient:

    Postfix.start(settings={"smtpd_recipient_restrictions":
                            "check_recipient_access inline:{ { refused@example.org = 550 5.1.1 no such user } }"})
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.debian_util import can_install, ensure_packages

_POSTFIX = Path("/usr/sbin/postfix")
_DAEMONS = Path("/usr/lib/postfix/sbin")

# The services a private instance needs (no chroot: the queue is in a temporary folder). `discard` ends every
# delivery; `postlog` writes `maillog_file` without syslog.
_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def _installed() -> bool:
    return _POSTFIX.exists() and (_DAEMONS / "smtpd").exists()


def _stop_system_postfix() -> None:
    """Installing the package may start the system's own Postfix (port 25) where services may start: stop it."""
    if not Path("/etc/postfix/main.cf").exists():
        return  # "No configuration": nothing was set up, nothing runs
    status = subprocess.run([str(_POSTFIX), "status"], capture_output=True, check=False, timeout=60)
    if status.returncode == 0:
        subprocess.run([str(_POSTFIX), "stop"], capture_output=True, check=False, timeout=60)


def find_postfix() -> Path | None:
    """The `postfix` command. As root, installs Debian's `postfix` when missing (without configuring or starting
    a system mail server). None when it cannot be provided (not root and not installed, no apt-get, failed)."""
    if not _installed() and can_install():
        # Asked before the install: debconf then writes no /etc/postfix/main.cf, and the init script starts nothing.
        subprocess.run(
            ["debconf-set-selections"],
            input=b"postfix postfix/main_mailer_type select No configuration\n",
            capture_output=True,
            check=False,
            timeout=60,
        )
        ensure_packages(lambda: [] if _installed() else ["postfix"])
        _stop_system_postfix()
    return _POSTFIX if _installed() else None


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 (PEM files in `folder`), for Postfix's STARTTLS."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .sign(private, hashes.SHA256())
    )
    cert, key = folder / "postfix-cert.pem", folder / "postfix-key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key.chmod(0o600)
    return cert, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Postfix:
    """A running private Postfix; `port` on 127.0.0.1 speaks SMTP (with STARTTLS when started with a cert)."""

    folder: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def config_dir(self) -> Path:
        return self.folder / "etc"

    @property
    def log_path(self) -> Path:
        return self.folder / "maillog"

    @classmethod
    def start(
        cls,
        *,
        cert: Path | None = None,
        key: Path | None = None,
        settings: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> Postfix:
        """Write the configuration and start the master; RuntimeError (with the log) when Postfix is missing or
        does not come up. `cert`/`key` (PEM) make it offer STARTTLS; `settings` override main.cf parameters."""
        if find_postfix() is None:
            raise RuntimeError("Postfix is not available (install it with `apt-get install -y postfix`)")
        folder = Path(tempfile.mkdtemp(prefix="digest-postfix-"))
        folder.chmod(0o755)  # the daemons run as the `postfix` user once started
        instance = cls(folder, port or free_port())
        instance.config_dir.mkdir()
        (folder / "queue").mkdir()  # `postfix start` makes what is inside, not the folder itself
        (folder / "data").mkdir()
        shutil.chown(folder / "data", "postfix")
        main = {
            "compatibility_level": "3.6",
            "meta_directory": "/etc/postfix",  # postfix-files: what `postfix start` checks
            "queue_directory": str(folder / "queue"),
            "data_directory": str(folder / "data"),
            "maillog_file": str(instance.log_path),
            "maillog_file_prefixes": str(folder),
            "myhostname": "postfix.test",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "default_transport": "discard:",
            "relay_transport": "discard:",
            "local_transport": "discard:",
            "virtual_transport": "discard:",
            "smtpd_banner": "$myhostname ESMTP",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "smtpd_client_recipient_rate_limit": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "default_process_limit": "100",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
        }
        if cert is not None and key is not None:
            main.update(smtpd_tls_cert_file=str(cert), smtpd_tls_key_file=str(key), smtpd_tls_security_level="may")
        main.update(settings or {})
        instance.settings = main
        (instance.config_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        listen = f"127.0.0.1:{instance.port}"
        (instance.config_dir / "master.cf").write_text(_MASTER_CF.format(listen=listen))
        try:
            instance._postfix("start")
            instance._wait_until_listening()
        except BaseException:
            instance.stop()
            raise
        return instance

    def _postfix(self, command: str) -> None:
        result = subprocess.run(
            [str(_POSTFIX), "-c", str(self.config_dir), command],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"postfix {command} failed ({result.returncode}):\n{result.stderr}\n{self.log()}")

    def _wait_until_listening(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    if sock.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix did not answer on port {self.port}:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        """What Postfix logged so far (its own log file, not syslog)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, text: str, count: int, seconds: float = 60.0) -> int:
        """How many times `text` is in the log once it is there `count` times or `seconds` have passed (Postfix
        logs through its own daemon, a moment after the fact). `" status=sent "` counts delivered messages."""
        deadline = time.monotonic() + seconds
        while True:
            found = self.log().count(text)
            if found >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the master and its daemons at once (`postfix stop`), then remove the folder."""
        try:
            if (self.folder / "queue" / "pid" / "master.pid").exists():
                self._postfix("stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
