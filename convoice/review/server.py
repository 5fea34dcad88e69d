"""A local Label Studio for reviewers: its own virtual environment, SQLite, 127.0.0.1 only.

Label Studio pins Django, pyarrow and its own SDK, so it lives in a virtual
environment of its own (``.venv-labelstudio``, made on first use). The server
keeps its database under ``<store root>/labelstudio`` and serves the review
audio of the store through local-files storage (document root = the store
root). The admin account, password and API token are generated once and kept
in ``convoice-credentials.json`` (mode 0600) next to the database; they go to
Label Studio through the environment, never on a command line, and the token
is never printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import convoice

LABEL_STUDIO_REQUIREMENT = "label-studio==1.23.2"
# Everything installed into Label Studio's venv, the Makefile's LS_REQUIREMENTS too.
# sentry-sdk 3 (now on PyPI) removed options Label Studio 1.23.2 passes at start
# ("TypeError: Unknown option 'send_default_pii'"), and nothing in 1.23.2 caps it.
LABEL_STUDIO_REQUIREMENTS = (LABEL_STUDIO_REQUIREMENT, "sentry-sdk<3")
REQUIREMENTS_FILE = "convoice-requirements.txt"
CREDENTIALS = "convoice-credentials.json"
PID_FILE = "labelstudio.pid"
LOG_FILE = "labelstudio.log"
ADMIN = "admin@convoice.local"


class ServerError(RuntimeError):
    """The local Label Studio could not be installed, started or stopped."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    token: str = field(repr=False)
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class LocalServer:
    """Where a local Label Studio keeps its data and what it serves."""

    data_dir: Path
    document_root: Path  # the store root: task audio URLs are relative to it
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def pid_path(self) -> Path:
        return self.data_dir / PID_FILE


def venv_path() -> Path:
    """``$CONVOICE_LABELSTUDIO_VENV``, else ``.venv-labelstudio`` in the source checkout."""
    env = os.environ.get("CONVOICE_LABELSTUDIO_VENV")
    if env:
        return Path(env).expanduser()
    repo = convoice.checkout()
    if (repo / "pyproject.toml").is_file():
        return repo / ".venv-labelstudio"
    from convoice.engines.loaders import cache_dir

    return cache_dir() / "venv-labelstudio"


def executable(venv: Path) -> Path:
    return venv / "bin" / "label-studio"


def ensure_venv(venv: Path | None = None, log: object = None) -> Path:
    """The ``label-studio`` program, installing it into its own venv first when missing.

    The venv records what it was installed with (``convoice-requirements.txt``, the
    Makefile writes the same file); when the pins change, they are installed again
    over it, so a venv made before a pin was added is mended rather than kept."""
    venv = venv or venv_path()
    program = executable(venv)
    marker = venv / REQUIREMENTS_FILE
    wanted = "".join(f"{r}\n" for r in LABEL_STUDIO_REQUIREMENTS)
    if program.is_file() and marker.is_file() and marker.read_text() == wanted:
        return program
    say = log if callable(log) else (lambda _msg: None)
    pins = " ".join(LABEL_STUDIO_REQUIREMENTS)
    say(f"installing {pins} into {venv} (once; about 1 GB, a few minutes)")
    try:
        if not (venv / "bin" / "python").is_file():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *LABEL_STUDIO_REQUIREMENTS], check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise ServerError(f"could not install {pins} into {venv}: {err}") from err
    if not program.is_file():
        raise ServerError(f"{pins} installed but {program} is missing")
    marker.write_text(wanted)
    return program


def credentials(data_dir: Path) -> Credentials:
    """The admin login and API token of the local server (made on first use, mode 0600)."""
    path = data_dir / CREDENTIALS
    if path.is_file():
        data = json.loads(path.read_text())
        return Credentials(data["username"], data["password"], data["token"], data["secret_key"])
    data_dir.mkdir(parents=True, exist_ok=True)
    made = Credentials(
        ADMIN, secrets.token_urlsafe(12), secrets.token_hex(20), secrets.token_urlsafe(48)
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {
                "username": made.username,
                "password": made.password,
                "token": made.token,
                "secret_key": made.secret_key,
            },
            handle,
        )
    return made


def local_token(data_dir: Path) -> str:
    """The local server's API token, or "" when it was never started."""
    path = data_dir / CREDENTIALS
    return str(json.loads(path.read_text())["token"]) if path.is_file() else ""


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether a Label Studio answers at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def server_env(server: LocalServer, creds: Credentials) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(server.data_dir),
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        LABEL_STUDIO_USERNAME=creds.username,
        LABEL_STUDIO_PASSWORD=creds.password,
        LABEL_STUDIO_USER_TOKEN=creds.token,
        SECRET_KEY=creds.secret_key,  # stable: logins survive a restart
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(server.document_root),
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        # Webhooks to 127.0.0.1 (`convoice review pull --listen`): this server listens on
        # 127.0.0.1 only and its one admin is the operator, who alone can add webhooks.
        USE_DEFAULT_BANNED_SUBNETS="false",
    )
    return env


def running_pid(server: LocalServer) -> int | None:
    """The pid of the server this module started for ``server.data_dir``, if it still runs."""
    try:
        pid = int(server.pid_path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.is_dir() and b"label-studio" not in cmdline.read_bytes():
        return None  # the pid was reused by another program: never signal it
    return pid


def start(
    server: LocalServer, program: Path, timeout_s: float = 300.0
) -> tuple[subprocess.Popen[bytes] | None, Credentials]:
    """Start Label Studio on 127.0.0.1 and wait until it answers.

    Returns the process (None when this data dir's server was already up) and
    the login. The first start creates the database (about half a minute).
    """
    creds = credentials(server.data_dir)
    if healthy(server.url):
        if running_pid(server) is None:
            raise ServerError(f"port {server.port} is taken by another server: choose another")
        return None, creds
    cmd = [
        str(program),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--host",
        server.url,
        "--port",
        str(server.port),
        "--enable-legacy-api-token",
    ]
    with server.log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=server_env(server, creds),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=server.data_dir,
        )
    server.pid_path.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"Label Studio exited with code {proc.returncode}; last log lines:\n"
                + tail(server.log_path)
            )
        if healthy(server.url):
            return proc, creds
        time.sleep(1.0)
    stop_process(proc.pid)
    raise ServerError(
        f"Label Studio did not answer within {timeout_s:.0f} s; see {server.log_path}"
    )


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(pid: int, timeout_s: float = 20.0) -> None:
    """Stop the server process group this module started (it is its own session leader)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return
        except ChildProcessError:
            pass  # not our child (started by another command): poll until it is gone
        except OSError:
            return
        time.sleep(0.2)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def stop(server: LocalServer) -> bool:
    """Stop the server started for ``server.data_dir``; False when none was running."""
    pid = running_pid(server)
    if pid is None:
        return False
    stop_process(pid)
    server.pid_path.unlink(missing_ok=True)
    return True
