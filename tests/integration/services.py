"""Real services for integration tests: PostgreSQL, Redis, the fake OpenAI API and Airflow's own processes.

Every process is started in its own session (so it leads its own process group), writes its output to
a log file under the test's folder, and is stopped by pid *and* process group when the test ends,
passes or fails: SIGTERM, then SIGKILL after a grace period, then a check that nothing of the group
is left. Readiness is a line in the service's own log (or a condition the caller names), never a
fixed sleep. When a test fails, ``ServiceSet.report()`` gives the tail of every service log and the
task logs of every failed or retried task attempt, so a CI failure explains itself.

Only Debian packages and the test venv are needed: ``postgresql`` and ``redis-server`` from apt,
``apache-airflow-providers-celery`` and the Postgres drivers from the ``test`` extra.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class ServiceError(RuntimeError):
    """A service did not start, died, or a condition was not met in time."""


def free_port() -> int:
    """A port nobody listens on right now (on 127.0.0.1; every service here binds only there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.5,
               watch: Iterable[Service] = ()) -> Any:
    """Return ``condition()``'s first truthy value; fail after ``timeout`` s or when a watched service dies.

    ``every`` only paces the polling of a condition that has no event to wait on (a database row, a
    file); it never stands in for the condition itself.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    watched = list(watch)
    while True:
        value = condition()
        if value:
            return value
        for service in watched:
            if not service.alive():
                raise ServiceError(f"{service.name} exited with {service.returncode()} while waiting for {what}")
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout:.0f} s waiting for {what}")
        pause.wait(every)


@dataclass
class Service:
    """One long-running process, in its own process group, logging to ``log``."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    log: Path
    user: str | None = None
    #: What ``stop()`` sends first: SIGTERM lets Airflow/Celery/Redis shut down cleanly; Postgres
    #: treats SIGTERM as "wait for clients to leave", so it gets SIGINT (fast shutdown).
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = None
    pgid: int | None = None
    starts: int = 0

    def start(self) -> Service:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, env=dict(self.env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Another user (postgres) cannot enter the test's private folder: start it in /.
                start_new_session=True, user=self.user, cwd="/" if self.user else str(self.log.parent),
            )
        self.pgid = self.proc.pid  # a new session's leader leads its process group
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def current_text(self) -> str:
        """This start's part of the log (earlier starts are kept above it)."""
        text = self.text()
        return text[text.rfind("\n===== start "):]

    def wait_for_log(self, needle: str, timeout: float = 120) -> None:
        wait_until(lambda: needle in self.current_text(), timeout=timeout, what=f"{self.name} to log {needle!r}",
                   every=0.2, watch=[self])

    def group_alive(self) -> bool:
        return self.pgid is not None and _group_alive(self.pgid)

    def descendants(self) -> list[int]:
        """Every live process below the leader, even ones that moved to a group or session of their own."""
        return _descendants(self.pid) if self.proc is not None else []

    def signal_group(self, sig: int, also: Iterable[int] = ()) -> None:
        """Signal the leader by pid, the whole group (Celery's pool, task runners) and ``also`` (pids)."""
        for pid in also:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        if self.pgid is not None:
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash: no clean-up handlers run) and reap the leader."""
        below = self.descendants()
        self.signal_group(signal.SIGKILL, also=below)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        wait_until(lambda: not self.group_alive() and not _alive(below), timeout=30,
                   what=f"{self.name}'s processes to be gone", every=0.1)

    def stop(self, grace: float = 30) -> None:
        if self.proc is None:
            return
        below = self.descendants()
        self.signal_group(self.stop_signal)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left (the leader if it ignored us, children of the group or below it) is killed.
        below = sorted(set(below) | set(self.descendants()))
        if self.group_alive() or self.alive() or _alive(below):
            self.signal_group(signal.SIGKILL, also=below)
            self.proc.wait(timeout=30)
        wait_until(lambda: not self.group_alive() and not _alive(below), timeout=30,
                   what=f"{self.name}'s processes to be gone", every=0.1)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


def _processes() -> list[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, state) of every process, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found.append((int(entry), int(fields[1]), int(fields[2]), fields[0]))
    return found


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent, _, _ in _processes():
        children.setdefault(parent, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pids: Iterable[int]) -> bool:
    """Any of these pids still running (zombies waiting to be reaped count as gone)."""
    wanted = set(pids)
    return any(pid in wanted and state != "Z" for pid, _, _, state in _processes())


def _group_alive(pgid: int) -> bool:
    return any(group == pgid and state != "Z" for _, _, group, state in _processes())


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(f"terminated by signal {signum}: stopping the services this test started")


@dataclass
class ServiceSet:
    """Everything one test started; ``close()`` stops all of it in reverse order, whatever happened."""

    root: Path
    services: list[Service] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    airflow_home: Path | None = None

    def add(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def start(self, name: str, argv: list[str], env: Mapping[str, str], *, ready: str | None = None,
              timeout: float = 120, user: str | None = None, stop_signal: int = signal.SIGTERM) -> Service:
        service = self.add(Service(name, argv, env, self.root / "logs" / f"{name}.log", user=user, stop_signal=stop_signal))
        service.start()
        if ready is not None:
            service.wait_for_log(ready, timeout)
        return service

    def close(self) -> None:
        errors: list[str] = []
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others; report at the end
                errors.append(f"{service.name}: {exc!r}")
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:
                errors.append(repr(exc))
        leftovers = [s.name for s in self.services if s.group_alive()]
        if errors or leftovers:
            raise ServiceError(f"clean-up problems: {errors}; still running: {leftovers}")

    def __enter__(self) -> ServiceSet:
        # A SIGTERM (a CI timeout, `timeout`, kill) must stop what we started too: by default it ends
        # pytest at once and leaves PostgreSQL, Redis and Airflow's processes running.
        self._previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None:
                print(self.report(), flush=True)  # pytest shows captured output of failed tests
            self.close()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)

    def report(self, lines: int = 80) -> str:
        parts = [f"===== logs kept under {self.root}"]
        for service in self.services:
            parts.append(f"----- {service.name} (pid {service.proc.pid if service.proc else '-'}, "
                         f"rc {service.returncode()}, {service.starts} start(s)): last {lines} lines of {service.log}")
            parts.append(service.tail(lines))
        if self.airflow_home is not None:
            parts.append(task_log_report(self.airflow_home))
        return "\n".join(parts)


def task_logs(airflow_home: Path) -> list[Path]:
    """Every task attempt's log file (``logs/dag_id=…/run_id=…/task_id=…/attempt=N.log``)."""
    return sorted((airflow_home / "logs").glob("dag_id=*/run_id=*/task_id=*/attempt=*.log*"))


def task_log_report(airflow_home: Path, lines: int = 60) -> str:
    """Tails of the task logs that show a failure, a retry or an error (all of them if few)."""
    logs = task_logs(airflow_home)
    flagged = [p for p in logs if _looks_failed(p)]
    shown = flagged or logs[-4:]
    parts = [f"===== {len(logs)} task log files under {airflow_home / 'logs'}; {len(flagged)} show an error"]
    for path in shown:
        text = path.read_text(errors="replace").splitlines()
        parts.append(f"----- {path.relative_to(airflow_home)} (last {lines} lines)")
        parts.append("\n".join(text[-lines:]))
    return "\n".join(parts)


def _looks_failed(path: Path) -> bool:
    text = path.read_text(errors="replace")
    return any(marker in text for marker in ('"level":"error"', "[error", "Traceback", "ERROR", "up_for_retry", "state=failed"))


# -- PostgreSQL and Redis from Debian's packages -----------------------------------------------------

def postgres_bindir() -> Path:
    """Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<major>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise ServiceError("PostgreSQL server binaries not found: run `make system` (as root) or `apt-get install -y postgresql`")


def start_postgres(services: ServiceSet, database: str = "airflow") -> str:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>; returns the SQLAlchemy URL of ``database``.

    The cluster lives in its own folder in the system temp dir (pytest's folders are private to
    their user and initdb refuses to run as root, so as root the server runs as ``postgres``).
    fsync is off: the cluster is thrown away after the test.
    """
    bindir = postgres_bindir()
    user = "postgres" if os.geteuid() == 0 else None
    data = Path(tempfile.mkdtemp(prefix="openai-usage-pg-"))
    services.cleanups.append(lambda: shutil.rmtree(data, ignore_errors=True))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "airflow", "-E", "UTF8", "--no-locale", "--no-sync"],
        env=env, user=user, cwd=str(data), capture_output=True, text=True, timeout=300,
    )
    if init.returncode != 0:
        raise ServiceError(f"initdb failed ({init.returncode}): {init.stdout[-2000:]}{init.stderr[-2000:]}")
    port = free_port()
    services.start(
        "postgres",
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data), "-c", "listen_addresses=127.0.0.1",
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300"],
        env, ready="database system is ready to accept connections", user=user, stop_signal=signal.SIGINT,
    )
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="airflow", dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
    finally:
        conn.close()
    return f"postgresql+psycopg2://airflow@127.0.0.1:{port}/{database}"


def start_redis(services: ServiceSet) -> str:
    """A Redis on 127.0.0.1:<free port> that persists nothing; returns its ``redis://`` URL."""
    redis = shutil.which("redis-server")
    if redis is None:
        raise ServiceError("redis-server not found: run `make system` (as root) or `apt-get install -y redis-server`")
    port = free_port()
    folder = services.root / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    services.start(
        "redis", [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, ready="Ready to accept connections",
    )
    return f"redis://127.0.0.1:{port}/0"


# -- the fake OpenAI API as its own process ----------------------------------------------------------

def start_fake_api(services: ServiceSet, *args: str, name: str = "fake-api") -> str:
    """``python -m airflow_provider_openai_usage.testing serve --port 0 ARGS``; returns its base URL."""
    service = services.start(name, [sys.executable, "-m", "airflow_provider_openai_usage.testing", "serve", "--port", "0", *args],
                             {**os.environ, "PYTHONUNBUFFERED": "1"}, ready="listening on http://")
    line = next(ln for ln in service.current_text().splitlines() if "listening on http://" in ln)
    return line.split("listening on ", 1)[1].split()[0]


# -- Airflow -----------------------------------------------------------------------------------------

def airflow_env(home: Path, *, sql_alchemy_conn: str, executor: str, api_port: int, extra: Mapping[str, str] = ()) -> dict[str, str]:
    """The environment every Airflow process of one deployment shares (nothing of the caller's AIRFLOW_*).

    Every port is chosen free and bound to 127.0.0.1: log servers default to 0.0.0.0:8793/8794,
    which collide between deployments (and developers) on one machine.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENAI_USAGE"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        # One secret for the whole deployment: the api-server signs task tokens that workers present.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        # A task's calls to the Execution API wait this long per try (default 5 s): on a 2-core machine
        # shared with other jobs the api-server can be starved for longer than that.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def airflow_cli(*args: str, env: Mapping[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=dict(env), timeout=timeout)
    if result.returncode != 0:
        raise ServiceError(f"airflow {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def start_airflow(services: ServiceSet, component: str, env: Mapping[str, str], *args: str, name: str | None = None,
                  ready: str | None = None, timeout: float = 180) -> Service:
    """``airflow <component> ARGS`` as a service; ``ready`` is a line of its log that means it works."""
    return services.start(name or component, [sys.executable, "-m", "airflow", component, *args], env, ready=ready, timeout=timeout)


def start_api_server(services: ServiceSet, env: Mapping[str, str], *, timeout: float = 600) -> Service:
    """``airflow api-server``, ready only once its Execution API has answered a request.

    The api-server builds the Execution API (Cadwyn's versioned routers) on the first request, not at
    start-up: measured here, that first request costs ~4.7 s of CPU and took 21.7 s at load 14. Task
    supervisors give up after ``[workers] execution_api_timeout`` (5 s) x ``execution_api_retries``
    (5), and the task instance fails without running: the cause of the flaky real-scheduler test
    (issue #12). So readiness is an answer from ``/execution/health``, before any task is queued.
    """
    import requests

    service = start_airflow(services, "api-server", env, ready=API_SERVER_READY, timeout=timeout)
    url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/execution/health"

    def healthy() -> bool:
        try:
            return requests.get(url, timeout=timeout).status_code == 200
        except requests.ConnectionError:  # not listening yet: uvicorn binds after its start-up log lines
            return False

    wait_until(healthy, timeout=timeout, what=f"{url} to answer 200", every=0.2, watch=[service])
    return service


#: What each Airflow component logs once it is doing its job (Airflow 3.3).
API_SERVER_READY = "Uvicorn running on"
CELERY_WORKER_READY = " ready."


class AirflowAPI:
    """Airflow's public REST API (``/api/v2``) as the tests read it: run and task states, try numbers.

    With ``simple_auth_manager_all_admins`` every request is an admin's, so no token is needed.
    """

    def __init__(self, port: int) -> None:
        import requests

        self.base = f"http://127.0.0.1:{port}/api/v2"
        self.session = requests.Session()

    def get(self, path: str, **params: Any) -> Any:
        answer = self.session.get(self.base + path, params=params, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def every(self, path: str, key: str) -> list[dict[str, Any]]:
        """All entries of a list endpoint: the API caps a page at ``[api] maximum_page_limit`` (100 by
        default) whatever ``limit`` asks for, so read pages by offset until ``total_entries``."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.get(path, limit=100, offset=len(found))
            found += page[key]
            if not page[key] or len(found) >= page["total_entries"]:
                return found

    def runs(self, dag_id: str) -> dict[str, str]:
        """run_id → state of every run of ``dag_id``."""
        return {r["dag_run_id"]: r["state"] for r in self.every(f"/dags/{dag_id}/dagRuns", "dag_runs")}

    def task_instances(self, dag_id: str) -> list[dict[str, Any]]:
        return self.every(f"/dags/{dag_id}/dagRuns/~/taskInstances", "task_instances")

    def unpause(self, dag_id: str) -> None:
        answer = self.session.patch(f"{self.base}/dags/{dag_id}", json={"is_paused": False}, timeout=60)
        answer.raise_for_status()
