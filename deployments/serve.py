"""`make serve`: a local Prefect server, the process work pool, the deployments and a worker.

Prints the UI address and keeps running until Ctrl-C, which stops the worker first (and the
flow runs it started), then the server. Every child runs in its own session so that a signal
from the terminal reaches this script only and the shutdown happens in that order.

The server listens on 127.0.0.1 unless ``--host`` says otherwise, and it refuses to listen
anywhere else without an auth string: whoever reaches the API can start runs (docs/operations.md,
"Who may start runs"). The auth string comes from the environment only
(``PREFECT_SERVER_API_AUTH_STRING``); this script hands it to the server, and to its own CLI calls
and worker as ``PREFECT_API_AUTH_STRING``, and never prints it.

The same pieces (:class:`LocalPrefect`) drive the integration test that deploys and runs a
flow through a real server.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
WORK_POOL = "powercast-process"
DEFAULT_PORT = 4200
LOOPBACK_HOST = "127.0.0.1"
# Prefect 3's names: the server checks every API request against the first
# (prefect/settings/models/server/api.py), clients send the second (prefect/settings/models/api.py).
SERVER_AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_AUTH_ENV = "PREFECT_API_AUTH_STRING"
SERVER_START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def is_loopback(host: str) -> bool:
    """Return whether ``host`` names this machine only (127.0.0.0/8, ::1 or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to an outside address, so treat it as one


def _listens_everywhere(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified  # 0.0.0.0 or ::
    except ValueError:
        return False


def connect_host(host: str) -> str:
    """Return the address local clients use for a server bound to ``host`` (bracketed if IPv6)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:  # listening everywhere includes loopback, which always answers here
        address = ipaddress.ip_address("::1" if address.version == 6 else LOOPBACK_HOST)
    return f"[{address}]" if address.version == 6 else str(address)


def auth_environment(base: Mapping[str, str]) -> dict[str, str]:
    """Return the auth variables for the children of this script, taken from ``base`` only.

    The server's string is also the one its own CLI calls and worker (and the flow runs the worker
    starts) must send, so it is copied to the client-side name unless that is set already.
    """
    server, client = base.get(SERVER_AUTH_ENV), base.get(CLIENT_AUTH_ENV)
    for name, value in ((SERVER_AUTH_ENV, server), (CLIENT_AUTH_ENV, client)):
        # Prefect would lock every client out with an empty server string (and send nothing
        # with an empty client one): almost certainly a secret that failed to load.
        if value is not None and not value.strip():
            raise RuntimeError(f"{name} is set but empty: unset it, or give it the 'user:password' string")
    if server is None:
        return {CLIENT_AUTH_ENV: client} if client is not None else {}
    if client is not None and client != server:
        raise RuntimeError(
            f"{SERVER_AUTH_ENV} and {CLIENT_AUTH_ENV} differ: the server would refuse this script's CLI calls "
            f"and worker; unset {CLIENT_AUTH_ENV} (it is copied from {SERVER_AUTH_ENV})"
        )
    return {SERVER_AUTH_ENV: server, CLIENT_AUTH_ENV: server}


def check_exposure(host: str, base: Mapping[str, str]) -> None:
    """Refuse to listen on an address other machines reach unless the API asks for credentials."""
    if not is_loopback(host) and not base.get(SERVER_AUTH_ENV):
        raise RuntimeError(
            f"refusing to listen on {host!r} without {SERVER_AUTH_ENV}: anyone who reaches the port could "
            f"start runs. Set it from a secret store (docs/operations.md), or keep the default {LOOPBACK_HOST}."
        )


def prefect_environment(
    base: Mapping[str, str], port: int, prefect_home: Path, host: str = LOOPBACK_HOST
) -> dict[str, str]:
    """Return the environment for server, CLI and worker processes of a server on ``host``:``port``."""
    # The auth variables are dropped from ``base`` and put back checked by auth_environment.
    inherited = {key: value for key, value in base.items() if key not in (SERVER_AUTH_ENV, CLIENT_AUTH_ENV)}
    return {
        **inherited,
        **auth_environment(base),
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": f"http://{connect_host(host)}:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Set explicitly so that a PREFECT_SERVER_API_HOST in the caller's environment cannot
        # widen the bind address behind --host's back.
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        # A worker asks for new runs every few seconds instead of every 10 s.
        "PREFECT_WORKER_QUERY_SECONDS": base.get("PREFECT_WORKER_QUERY_SECONDS", "2"),
        "PYTHONUNBUFFERED": "1",
    }


def _prefect_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop ``process`` and everything in its session: SIGTERM, then SIGKILL after ``timeout_s``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


@dataclass
class LocalPrefect:
    """A Prefect server on ``host`` (127.0.0.1), with a process worker, whose state lives in ``prefect_home``."""

    port: int
    prefect_home: Path
    log_dir: Path
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    host: str = LOOPBACK_HOST
    server: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Return the environment every child process gets."""
        return prefect_environment(self.base_env, self.port, self.prefect_home, self.host)

    @property
    def api_url(self) -> str:
        """Return the API address (``.../api``)."""
        return f"{self.ui_url}/api"

    @property
    def ui_url(self) -> str:
        """Return the UI address."""
        return f"http://{connect_host(self.host)}:{self.port}"

    def _spawn(self, command: list[str], log_name: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / log_name, "ab") as log:
            return subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _run(self, command: list[str], what: str) -> None:
        finished = subprocess.run(command, check=False, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True)
        if finished.returncode != 0:
            raise RuntimeError(
                f"{what} failed (exit status {finished.returncode}): {' '.join(command)}\n"
                f"{finished.stdout[-4000:]}\n{finished.stderr[-4000:]}"
            )

    def start_server(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
        """Start ``prefect server start`` and return once ``/api/health`` answers.

        ``/api/health`` answers without credentials even when the API asks for them (Prefect keeps
        it open for probes), so the wait works either way.
        """
        check_exposure(self.host, self.base_env)
        env = self.env  # checks the auth variables before anything starts
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        self.server = self._spawn(
            _prefect_command("server", "start", "--host", env["PREFECT_SERVER_API_HOST"], "--port", str(self.port)),
            "server.log",
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(
                    f"the Prefect server exited with status {self.server.returncode}; see {self.log_dir / 'server.log'}"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"the Prefect server did not answer {self.api_url}/health within {timeout_s:g} s; "
            f"see {self.log_dir / 'server.log'}"
        )

    def create_pool(self) -> None:
        """Create (or keep) the process work pool the deployments use."""
        self._run(_prefect_command("work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"), "work pool")

    def deploy(self, prefect_file: Path = PREFECT_FILE) -> None:
        """Register every deployment of ``prefect_file`` with the server."""
        self._run(
            _prefect_command("deploy", "--all", "--no-prompt", "--prefect-file", str(prefect_file)), "prefect deploy"
        )

    def start_worker(self) -> None:
        """Start a process worker on the pool (it runs each flow run as a child process)."""
        self.worker = self._spawn(
            _prefect_command("worker", "start", "--pool", WORK_POOL, "--type", "process", "--name", "powercast-local"),
            "worker.log",
        )

    def stop(self) -> None:
        """Stop the worker (and its flow runs), then the server."""
        for process in (self.worker, self.server):
            if process is not None:
                stop_process_group(process)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    """Return the command line of ``make serve`` (``SERVE_ARGS`` in the Makefile)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    # The default is a constant, not PREFECT_SERVER_API_HOST: exposing the server is a choice made
    # on the command line, never by a variable left over in someone's shell.
    parser.add_argument(
        "--host",
        default=LOOPBACK_HOST,
        help=f"address to listen on (default {LOOPBACK_HOST}, this machine only); any other needs "
        f"{SERVER_AUTH_ENV} in the environment (docs/operations.md)",
    )
    return parser


def _announce(stack: LocalPrefect) -> None:
    """Print where the UI is and who may use it (never the auth string itself)."""
    print(f"\nPrefect UI: {stack.ui_url}\n  deployments: {stack.ui_url}/deployments", flush=True)
    if SERVER_AUTH_ENV in stack.env:
        print(f"  the API asks for the {SERVER_AUTH_ENV} credentials (the UI prompts for them)", flush=True)
    else:
        print(f"  the API asks for no credentials: it listens on {stack.host} only", flush=True)
    if _listens_everywhere(stack.host) and "PREFECT_UI_API_URL" not in stack.env:
        # Listening everywhere: the UI would send other machines' browsers to their own 127.0.0.1.
        print(f"  browsers elsewhere need PREFECT_UI_API_URL=http://<this host>:{stack.port}/api", flush=True)
    print(f"  work pool {WORK_POOL!r} has a worker; Ctrl-C stops the worker, then the server.", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the local Prefect stack until Ctrl-C (or SIGTERM); returns the exit status."""
    # Explicit handlers: a shell starting this in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    args = build_parser().parse_args(argv)
    prefect_home = Path(os.environ.get("PREFECT_HOME", REPO_ROOT / "var" / "prefect"))
    stack = LocalPrefect(port=args.port, prefect_home=prefect_home, log_dir=prefect_home / "logs", host=args.host)
    try:
        print(f"starting the Prefect server on {args.host}:{args.port} (logs in {stack.log_dir}) ...", flush=True)
        stack.start_server()
        stack.create_pool()
        print(f"deploying {PREFECT_FILE.relative_to(REPO_ROOT)} ...", flush=True)
        stack.deploy()
        stack.start_worker()
        _announce(stack)
        while True:
            for name, process in (("server", stack.server), ("worker", stack.worker)):
                if process is not None and process.poll() is not None:
                    print(f"the {name} exited with status {process.returncode}; see {stack.log_dir}", file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping the worker, then the server ...", flush=True)
        stopping = time.monotonic()
        stack.stop()
        print(f"stopped in {time.monotonic() - stopping:.0f} s", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
