"""Shared fixtures: a temp AIRFLOW_HOME set before Airflow is imported, the fake API, moto S3.

Nothing here mocks our code or requests: tests talk HTTP to the fake API on 127.0.0.1 and S3 to a
moto server on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="openai-usage-tests-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(_AIRFLOW_HOME) / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
(Path(_AIRFLOW_HOME) / "dags").mkdir(parents=True, exist_ok=True)

import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI  # noqa: E402

#: OpenAI's spec, as facts kept in the repository (tests/data/openai_spec/extract.py says how they are made).
SPEC_FACTS = Path(__file__).resolve().parent / "data" / "openai_spec"
#: 2025-11-10T00:00:00Z: tests run at a fixed "now" so data and buckets never depend on the clock.
NOW = 1762732800
DAY = 86400
#: The fake API's (first) organization and its level in the layout (issue #29): every dataset lands
#: under <dataset>/organization=<id>/.
FAKE_ORG = "org-FakeUsage7Fk3bQz9Mn2Lp5"
ORG_DIR = f"organization={FAKE_ORG}"
SENTINEL_KEY = "sk-admin-SENTINEL-test-key-0123456789abcdef"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration starts real systems (Airflow, a scheduler, moto, the demo,
    a browser, a validator): marked ``integration`` so ``pytest tests/unit`` stays a seconds-long loop,
    and put in one xdist group, so they run one after another in one of the two test processes
    (``-n 2 --dist loadgroup`` in pyproject.toml) while the other takes the unit tests.

    Here, not in tests/integration/conftest.py: a second ``conftest`` module replaces this one in
    ``sys.modules`` and breaks every ``from conftest import ...`` collected after it.
    """
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.xdist_group("integration"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture
def fake_api() -> Iterator[FakeOpenAIUsageAPI]:
    with FakeOpenAIUsageAPI(key=SENTINEL_KEY, seed=7, now=NOW) as api:
        yield api


@pytest.fixture
def conn_id(fake_api: FakeOpenAIUsageAPI, monkeypatch: pytest.MonkeyPatch) -> str:
    """``openai_usage_default`` pointed at the fake API, with quick retries for tests.

    The timeout is generous: on a machine busy with other jobs a dense page can take the fake API
    seconds to build, and a test must not fail for being slow (tests of timeouts set their own).
    """
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPENAI_USAGE_DEFAULT",
        fake_api.connection_json(timeout=120, max_retries=4, max_retry_wait=30, backoff_base=0.01),
    )
    return "openai_usage_default"


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.initdb()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode) on 127.0.0.1 for s3:// paths."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # Wait for moto's own "Running on" line (readiness, not a sleep): it takes ~1 s to import.
        assert proc.stdout is not None
        seen = []
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            seen.append(line)
            if "Running on" in line:
                break
        else:
            raise RuntimeError("moto server exited: " + "".join(seen))
        # Keep draining its access log so a full pipe never blocks the server.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket and the Airflow AWS connection ``moto_s3`` that reaches it."""
    import uuid

    import boto3

    name = f"usage-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=moto_server, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).create_bucket(Bucket=name)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MOTO_S3",
        json.dumps(
            {"conn_type": "aws", "login": "testing", "password": "testing",
             "extra": {"endpoint_url": moto_server, "region_name": "us-east-1"}}
        ),
    )
    return name


@pytest.fixture(scope="session")
def spec() -> dict:
    """OpenAI's official spec for the usage and costs paths: GET operations and schemas, prose dropped."""
    return json.loads((SPEC_FACTS / "usage.json").read_text())


@pytest.fixture(scope="session")
def spec_examples() -> dict:
    """The example answers OpenAI's spec documents for every usage path and result object."""
    return json.loads((SPEC_FACTS / "usage_examples.json").read_text())


@pytest.fixture(scope="session")
def spec_validator(spec: dict):
    """Validates a decoded response against a ``components.schemas`` entry, $refs resolved in the spec."""
    return schema_validator(spec)


@pytest.fixture(scope="session")
def admin_spec() -> dict:
    """OpenAI's official admin API spec for the directory's paths, with the spec's example answers."""
    return json.loads((SPEC_FACTS / "admin.json").read_text())


@pytest.fixture(scope="session")
def admin_spec_validator(admin_spec: dict):
    return schema_validator(admin_spec)


def schema_validator(spec: dict):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    registry = Registry().with_resource("urn:openai-spec", Resource.from_contents(spec, default_specification=_draft()))

    def validate(instance: object, schema_name: str) -> None:
        schema = {"$ref": f"urn:openai-spec#/components/schemas/{schema_name}"}
        Draft202012Validator(schema, registry=registry).validate(instance)

    return validate


def _draft():
    from referencing.jsonschema import DRAFT202012

    return DRAFT202012


def result_schema_name(spec: dict, result_object: str) -> str:
    """The components.schemas entry whose ``object`` enum is this result object."""
    for name, schema in spec["components"]["schemas"].items():
        if schema.get("properties", {}).get("object", {}).get("enum") == [result_object]:
            return name
    raise LookupError(result_object)


@pytest.fixture
def run_dag(airflow_db, tmp_path):
    """Write a DAG file into the dags folder, load it through a DagBag and ``dag.test()`` it.

    Returns the DagRun and the task states; this is real Airflow (sqlite, task runner, XCom).
    """
    from airflow.dag_processing.dagbag import DagBag

    dags_folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    written: list[Path] = []

    def run(source: str, dag_id: str, logical_date=None, **kwargs):
        path = dags_folder / f"{dag_id}.py"
        path.write_text(source)
        written.append(path)
        bag = DagBag(dag_folder=str(path))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(dag_id)
        dr = dag.test(logical_date=logical_date, **kwargs)
        states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
        return dr, states

    yield run
    for path in written:
        path.unlink(missing_ok=True)

