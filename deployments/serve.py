"""`make serve`: a local Prefect server, the process work pool, the deployments and a worker.

Prints the UI address and keeps running until Ctrl-C, which stops the worker first (and the
flow runs it started), then the server. Every child runs in its own session so that a signal
from the terminal reaches this script only and the shutdown happens in that order.

The same pieces (:class:`LocalPrefect`) drive the integration test that deploys and runs a
flow through a real server.
"""

from __future__ import annotations

import argparse
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
SERVER_START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prefect_environment(base: Mapping[str, str], port: int, prefect_home: Path) -> dict[str, str]:
    """Return the environment for server, CLI and worker processes talking to 127.0.0.1:``port``."""
    return {
        **base,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
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
    """A Prefect server on 127.0.0.1, with a process worker, whose state lives in ``prefect_home``."""

    port: int
    prefect_home: Path
    log_dir: Path
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    server: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Return the environment every child process gets."""
        return prefect_environment(self.base_env, self.port, self.prefect_home)

    @property
    def api_url(self) -> str:
        """Return the API address (``.../api``)."""
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """Return the UI address."""
        return f"http://127.0.0.1:{self.port}"

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
        finished = subprocess.run(command, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True)
        if finished.returncode != 0:
            raise RuntimeError(
                f"{what} failed (exit status {finished.returncode}): {' '.join(command)}\n"
                f"{finished.stdout[-4000:]}\n{finished.stderr[-4000:]}"
            )

    def start_server(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
        """Start ``prefect server start`` and return once ``/api/health`` answers."""
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        self.server = self._spawn(
            _prefect_command("server", "start", "--host", "127.0.0.1", "--port", str(self.port)), "server.log"
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


def main(argv: list[str] | None = None) -> int:
    """Run the local Prefect stack until Ctrl-C (or SIGTERM); returns the exit status."""
    # Explicit handlers: a shell starting this in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    prefect_home = Path(os.environ.get("PREFECT_HOME", REPO_ROOT / "var" / "prefect"))
    stack = LocalPrefect(port=args.port, prefect_home=prefect_home, log_dir=prefect_home / "logs")
    try:
        print(f"starting the Prefect server on {stack.ui_url} (logs in {stack.log_dir}) ...", flush=True)
        stack.start_server()
        stack.create_pool()
        print(f"deploying {PREFECT_FILE.relative_to(REPO_ROOT)} ...", flush=True)
        stack.deploy()
        stack.start_worker()
        print(f"\nPrefect UI: {stack.ui_url}\n  deployments: {stack.ui_url}/deployments", flush=True)
        print(f"  work pool {WORK_POOL!r} has a worker; Ctrl-C stops the worker, then the server.", flush=True)
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
