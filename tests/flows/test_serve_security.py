"""Who may start runs: `make serve` listens on 127.0.0.1 only, and a team server asks for credentials.

The two server tests run ``deployments/serve.py`` itself, as ``make serve`` does (its default
address, its pass-through of the environment), on a free port with a temporary PREFECT_HOME.
The auth string is made up per test; none is stored anywhere in the repository.
See docs/operations.md, "Who may start runs".
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from deployments.serve import (
    CLIENT_AUTH_ENV,
    LOOPBACK_HOST,
    REPO_ROOT,
    SERVER_AUTH_ENV,
    WORK_POOL,
    LocalPrefect,
    auth_environment,
    build_parser,
    free_port,
    prefect_environment,
    stop_process_group,
)

SERVE_SCRIPT = REPO_ROOT / "deployments" / "serve.py"
START_TIMEOUT_S = 240
READY_MARKER = "Prefect UI:"


def _environment_without_auth(**extra: str) -> dict[str, str]:
    """This process's environment without any auth string a developer may have set, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in (SERVER_AUTH_ENV, CLIENT_AUTH_ENV)}
    return {**env, **extra}


def _basic(auth_string: str) -> str:
    return "Basic " + base64.b64encode(auth_string.encode("utf-8")).decode("ascii")


def _call(url: str, body: object | None = None, auth_string: str | None = None) -> tuple[int, object]:
    """Return (HTTP status, decoded JSON) of a plain urllib call: POST with ``body``, else GET."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    if auth_string is not None:
        request.add_header("Authorization", _basic(auth_string))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"null")


@dataclass
class Serve:
    """A running ``deployments/serve.py`` and where it writes."""

    process: subprocess.Popen[bytes]
    port: int
    home: Path
    output: Path

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.port}/api"

    def text(self) -> str:
        """Return what serve.py and its server and worker printed so far."""
        logs = sorted((self.home / "logs").glob("*.log"))
        return "\n".join(path.read_text(errors="replace") for path in [self.output, *logs] if path.is_file())


def _wait_until(serve: Serve, ready: object) -> None:
    """Poll ``ready()`` until true; fail with serve.py's output if it exits or ``START_TIMEOUT_S`` passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if serve.process.poll() is not None:
            pytest.fail(f"serve.py exited with status {serve.process.returncode}:\n{serve.text()[-4000:]}")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.5)
    pytest.fail(f"serve.py was not ready within {START_TIMEOUT_S} s:\n{serve.text()[-4000:]}")


@contextmanager
def running_serve(tmp_path: Path, env: Mapping[str, str]) -> Iterator[Serve]:
    """Run ``python deployments/serve.py --port <free>`` (its default address); Ctrl-C it at the end."""
    port, home, output = free_port(), tmp_path / "prefect", tmp_path / "serve.out"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(SERVE_SCRIPT), "--port", str(port)],
            cwd=REPO_ROOT,
            env={**env, "PREFECT_HOME": str(home), "PYTHONUNBUFFERED": "1"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    serve = Serve(process, port, home, output)
    try:
        yield serve
        # Ctrl-C, as in a terminal: serve.py stops the worker, then the server, and exits 0.
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, serve.text()[-4000:]
    finally:
        stop_process_group(process)


def _listening_sockets(root_pid: int) -> list[tuple[str, int]]:
    """Return (address, port) of every listening TCP socket of the process ``root_pid`` and its descendants."""
    root = psutil.Process(root_pid)
    found = []
    for process in [root, *root.children(recursive=True)]:
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found += [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    return found


def _outside_addresses() -> list[str]:
    """Return this machine's addresses that other machines could reach (no loopback, no link-local)."""
    addresses = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(entry.address.split("%")[0])
            if not (address.is_loopback or address.is_link_local):
                addresses.append(str(address))
    return addresses


def _assert_reachable_from_loopback_only(serve: Serve) -> None:
    listening = _listening_sockets(serve.process.pid)
    assert (LOOPBACK_HOST, serve.port) in listening, listening
    assert all(ipaddress.ip_address(address).is_loopback for address, _ in listening), listening
    for address in _outside_addresses():
        with pytest.raises(OSError):  # refused: nothing listens there
            socket.create_connection((address, serve.port), timeout=3).close()


# --- no server -------------------------------------------------------------------------------


def test_make_serve_binds_loopback_unless_told_otherwise() -> None:
    assert build_parser().parse_args([]).host == LOOPBACK_HOST
    # A stray PREFECT_SERVER_API_HOST in someone's shell does not widen the address.
    env = prefect_environment({"PREFECT_SERVER_API_HOST": "0.0.0.0"}, 4200, Path("/tmp/h"))
    assert env["PREFECT_SERVER_API_HOST"] == LOOPBACK_HOST
    assert env["PREFECT_API_URL"] == f"http://{LOOPBACK_HOST}:4200/api"


@pytest.mark.timeout(60)
def test_serve_refuses_an_outside_address_without_an_auth_string(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, str(SERVE_SCRIPT), "--host", "0.0.0.0", "--port", str(free_port())],
        check=False,
        cwd=REPO_ROOT,
        env=_environment_without_auth(PREFECT_HOME=str(tmp_path / "prefect")),
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert finished.returncode == 1
    assert f"refusing to listen on '0.0.0.0' without {SERVER_AUTH_ENV}" in finished.stderr
    assert not (tmp_path / "prefect" / "logs" / "server.log").exists()  # no server was started
    # LocalPrefect itself refuses too (the test fixtures and other callers start servers through it).
    stack = LocalPrefect(
        port=free_port(), prefect_home=tmp_path / "h", log_dir=tmp_path / "l", base_env=_environment_without_auth()
    )
    stack.host = "192.0.2.1"
    with pytest.raises(RuntimeError, match="refusing to listen"):
        stack.start_server()
    assert stack.server is None


def test_the_server_auth_string_is_what_the_cli_and_worker_send() -> None:
    assert auth_environment({}) == {}
    assert auth_environment({SERVER_AUTH_ENV: "ops:example"}) == {
        SERVER_AUTH_ENV: "ops:example",
        CLIENT_AUTH_ENV: "ops:example",
    }
    assert auth_environment({CLIENT_AUTH_ENV: "ops:example"}) == {CLIENT_AUTH_ENV: "ops:example"}
    with pytest.raises(RuntimeError, match="differ"):
        auth_environment({SERVER_AUTH_ENV: "ops:example", CLIENT_AUTH_ENV: "ops:another"})
    with pytest.raises(RuntimeError, match="set but empty"):
        auth_environment({SERVER_AUTH_ENV: " "})
    env = prefect_environment({SERVER_AUTH_ENV: "ops:example", "OTHER": "kept"}, 4200, Path("/tmp/h"))
    assert env[CLIENT_AUTH_ENV] == "ops:example" and env["OTHER"] == "kept"


# --- real servers ----------------------------------------------------------------------------


@pytest.mark.prefect_server
@pytest.mark.timeout(300)
def test_make_serve_listens_on_loopback_only(tmp_path: Path) -> None:
    with running_serve(tmp_path, _environment_without_auth()) as serve:

        def healthy() -> bool:
            try:
                return _call(f"{serve.api_url}/health")[0] == 200
            except OSError:
                return False

        _wait_until(serve, healthy)
        _assert_reachable_from_loopback_only(serve)
        # Without an auth string the API answers anyone who reaches it: loopback is the only guard.
        assert _call(f"{serve.api_url}/flows/filter", {})[0] == 200


def _prefect_cli(serve: Serve, *args: str, auth_string: str | None) -> subprocess.CompletedProcess[str]:
    """Run the Prefect CLI against ``serve`` as a team member would: API URL, and the string or not."""
    env = _environment_without_auth(PREFECT_API_URL=serve.api_url, PREFECT_HOME=str(serve.home), COLUMNS="200")
    if auth_string is not None:
        env[CLIENT_AUTH_ENV] = auth_string
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _online_workers(serve: Serve, auth_string: str) -> list[str]:
    status, workers = _call(f"{serve.api_url}/work_pools/{WORK_POOL}/workers/filter", {}, auth_string)
    assert status == 200, workers
    return [worker["name"] for worker in workers if worker["status"] == "ONLINE"]  # type: ignore[union-attr]


@pytest.mark.prefect_server
@pytest.mark.timeout(400)
def test_team_server_refuses_calls_without_the_auth_string(tmp_path: Path) -> None:
    auth_string = f"powercast:{secrets.token_urlsafe(24)}"  # made up here, stored nowhere
    with running_serve(tmp_path, _environment_without_auth(**{SERVER_AUTH_ENV: auth_string})) as serve:
        # serve.py prints the UI address once its own CLI calls (work pool, deploy) got through.
        _wait_until(serve, lambda: READY_MARKER in serve.output.read_text(errors="replace"))
        _assert_reachable_from_loopback_only(serve)
        api = serve.api_url

        # Probes stay open (Prefect exempts GET /health and /ready); everything else is refused.
        assert _call(f"{api}/health")[0] == 200
        assert _call(f"{api}/flows/filter", {})[0] == 401
        assert _call(f"{api}/flows/filter", {}, auth_string="powercast:wrong")[0] == 401
        status, deployment = _call(f"{api}/deployments/name/nightly/nightly-manual", auth_string=auth_string)
        assert status == 200, deployment
        run_url = f"{api}/deployments/{deployment['id']}/create_flow_run"  # type: ignore[index]
        assert _call(run_url, {"name": "nobody's run"})[0] == 401
        # ... and no run was made (the scheduler's runs of nightly/nightly-scheduled belong to another deployment).
        made = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}  # type: ignore[index]
        assert _call(f"{api}/flow_runs/filter", made, auth_string) == (200, [])
        assert _call(f"{api}/flows/filter", {}, auth_string)[0] == 200
        # The UI asks its user for the string (its settings say so).
        assert _call(f"http://{LOOPBACK_HOST}:{serve.port}/ui-settings")[1]["auth"] == "BASIC"  # type: ignore[index]

        listed = _prefect_cli(serve, "deployment", "ls", auth_string=auth_string)
        assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
        assert "nightly/nightly-manual" in listed.stdout
        assert _prefect_cli(serve, "deployment", "ls", auth_string=None).returncode != 0

        # The worker got the string through its environment: it heartbeats, so the pool shows it online.
        _wait_until(serve, lambda: "powercast-local" in _online_workers(serve, auth_string))
        assert auth_string not in serve.text()  # neither serve.py nor the server or worker logs print it
    assert auth_string not in serve.text()
