"""A real MQTT broker for tests: Debian's ``mosquitto`` on a free loopback port.

``Mosquitto(tmp_path).start()`` writes a minimal config (loopback listener, anonymous, persistence
in the tmp dir so QoS 1 messages for a persistent session survive a restart) and waits until the
port accepts connections; ``stop()`` ends it with SIGTERM (which saves the persistence file) and
``start()`` again brings it back on the same port. Without the binary the tests are skipped,
except under CI (``CI`` set), where that is a failure: the Makefile installs it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Mosquitto", "TlsFiles", "free_port", "make_tls_files", "need_mosquitto"]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _run(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr}")


def make_tls_files(folder: Path) -> TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl; skip without it)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed: cannot make test certificates")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n", encoding="utf-8")
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=test-ca", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr))  # fmt: skip
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return TlsFiles(ca, cert, key)


def _password_file(folder: Path, users: dict[str, str]) -> Path:
    tool = shutil.which("mosquitto_passwd")
    if not tool:
        pytest.skip("mosquitto_passwd not installed: cannot set up broker accounts")
    path = folder / "passwords"
    path.touch(mode=0o600)
    for user, password in users.items():
        _run(tool, "-b", str(path), user, password)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_mosquitto() -> str:
    """Path of the ``mosquitto`` binary, or skip (fail under CI) with the reason."""
    exe = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None,
    )
    if exe:
        return exe
    reason = (
        "mosquitto (the MQTT broker) is not installed: apt-get install -y mosquitto "
        "(`make test` does it)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class Mosquitto:
    """One broker process on ``127.0.0.1:port`` with its files under ``folder``."""

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        *,
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.exe = need_mosquitto()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"
        self.conf = self.folder / "mosquitto.conf"
        extra = ""
        if tls is not None:
            extra += f"cafile {tls.ca}\ncertfile {tls.cert}\nkeyfile {tls.key}\n"
        if users:
            extra += f"password_file {_password_file(self.folder, users)}\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # Started as root, mosquitto drops to user "mosquitto", who cannot read the tmp dir.
            f"user {getpass.getuser()}\n"
            f"{extra}"
            f"allow_anonymous {'false' if users else 'true'}\n"
            "persistence true\n"
            f"persistence_location {self.folder}/\n"
            "autosave_interval 1\n"
            f"log_dest file {self.folder / 'mosquitto.log'}\n"
            "max_queued_messages 100000\n",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # SIGTERM: mosquitto writes its persistence file and exits
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()

    def log_text(self) -> str:
        p = self.folder / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""
