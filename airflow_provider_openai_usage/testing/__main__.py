"""``python -m airflow_provider_openai_usage.testing serve [--port PORT] [--key KEY] [--seed N] [--projects N] [--organizations N]``.

On start it prints one parseable line (``... listening on <base url>``, so scripts wait for it instead
of sleeping), then the ``export AIRFLOW_CONN_OPENAI_USAGE_DEFAULT=...`` line that points Airflow at
this server, ready to paste into another shell.

Fault and lateness options make it a stand-in for a bad day at OpenAI, for whole deployments:
``--fault-rate 0.1`` fails a seeded tenth of requests (429 with Retry-After, 5xx, dropped
connections), ``--available-until T --reveal-after S`` reports nothing at or after T until S seconds
after start, or once ``--reveal-file PATH`` exists (late-arriving data), ``--request-log FILE``
records every request as a JSON line.

``--organizations N`` serves N organizations, one per admin key (``--key`` for the first, then
``<key>-2``...), and prints one export line each: ``AIRFLOW_CONN_OPENAI_USAGE_DEFAULT`` for the
first, ``AIRFLOW_CONN_OPENAI_USAGE_ORG_<k>`` (connection ``openai_usage_org_<k>``) for the k-th, each
with its ``organization_id`` extra; ``--fault-organization K`` aims the fault rate at one of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from pathlib import Path

from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR
from airflow_provider_openai_usage.testing.data import PROJECT_POOL, parse_spike
from airflow_provider_openai_usage.testing.faults import Fault, status
from airflow_provider_openai_usage.testing.server import (
    DEFAULT_KEY,
    FakeOpenAIUsageAPI,
    LoggedRequest,
    connection_export,
    fake_organizations,
    serve_forever,
)

#: ``--fault-kinds`` names: what a client meets on a bad day (all retryable).
FAULT_KINDS = {"429": "429", "500": "500", "502": "502", "503": "503", "504": "504", "drop": "drop", "truncate": "truncate"}


def _faults(kinds: str, retry_after: int, key: str | None = None) -> list[Fault]:
    """The ``--fault-kinds`` faults; with ``key``, aimed at that key's requests only."""
    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    if not chosen or set(chosen) - set(FAULT_KINDS):
        raise SystemExit(f"--fault-kinds={kinds!r}: choose from {','.join(FAULT_KINDS)}")
    return [
        Fault(k, key=key) if not k.isdigit() else status(int(k), retry_after=retry_after if k == "429" else None, key=key)  # type: ignore[arg-type]
        for k in chosen
    ]


def conn_id_of(number: int) -> str:
    """The connection the serve command's export line of organization ``number`` defines."""
    return "openai_usage_default" if number == 1 else f"openai_usage_org_{number}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_openai_usage.testing")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve the fake OpenAI usage API on loopback until interrupted",
        description="Serve the fake OpenAI usage API on 127.0.0.1 until interrupted (Ctrl-C). On start it prints "
        "the base URL and the export line of the Airflow connection that reaches it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    serve.add_argument("--key", default=DEFAULT_KEY, help="the admin key clients must send as Bearer token")
    serve.add_argument("--seed", type=int, default=0, help="seed of the synthetic organization's usage")
    serve.add_argument("--projects", type=int, default=3, choices=range(1, len(PROJECT_POOL) + 1), metavar="N",
                       help=f"projects in the synthetic organization (1-{len(PROJECT_POOL)})")
    serve.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    serve.add_argument("--amount-format", choices=("number", "string", "mixed"), default="number", help="how costs amounts are encoded")
    serve.add_argument("--now", type=int, default=None, help="fixed Unix time the server believes it is; unset: the real clock")
    serve.add_argument("--dense-groups", type=int, default=0, help="benchmarks: N synthetic results in every bucket")
    serve.add_argument("--fault-rate", type=float, default=0.0, help="fraction of requests that fail (0..1)")
    serve.add_argument("--fault-kinds", default="429,500,502,503,drop", help="comma-separated: " + ",".join(FAULT_KINDS))
    serve.add_argument("--fault-seed", type=int, default=0, help="seed of which requests fail")
    serve.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent with 429")
    serve.add_argument("--available-until", type=int, default=None, help="Unix time: nothing at or after it is reported yet")
    serve.add_argument("--reveal-after", type=float, default=None,
                       help="seconds after start when --available-until is lifted (late-arriving data)")
    serve.add_argument("--reveal-file", default=None,
                       help="lift --available-until as soon as this file exists (checked on every request)")
    serve.add_argument("--request-log", default=None, help="append one JSON line per request to this file")
    serve.add_argument("--spike", default=None, metavar="PROJECT:YYYY-MM-DD:EVENTS",
                       help="that project spends EVENTS extra events on that UTC day (the demo's spend anomaly)")
    serve.add_argument("--api-key-floor", type=int, default=COSTS_API_KEY_FLOOR,
                       help="Unix time: costs grouped by api_key_id are refused (400) for ranges starting earlier; -1: never")
    serve.add_argument("--costs-max-limit", type=int, default=180, help="largest costs limit answered; more gets OpenAI's 400")
    serve.add_argument("--organizations", type=int, default=1, metavar="N",
                       help="organizations served, one per admin key: --key for the first, KEY-2, KEY-3... for the others "
                       "(own ids, seed SEED+k-1); one export line each")
    serve.add_argument("--fault-organization", type=int, default=None, metavar="K",
                       help="the fault rate hits only organization K's key (1: --key); unset: every request")
    args = parser.parse_args(argv)
    if not 0.0 <= args.fault_rate <= 1.0:
        parser.error(f"--fault-rate={args.fault_rate}: must be between 0 and 1")
    if args.organizations < 1:
        parser.error(f"--organizations={args.organizations}: serve at least 1")
    if args.fault_organization is not None and not 1 <= args.fault_organization <= args.organizations:
        parser.error(f"--fault-organization={args.fault_organization}: choose 1..{args.organizations} (--organizations)")

    spike = parse_spike(args.spike) if args.spike else None
    served = fake_organizations(args.organizations, key=args.key, seed=args.seed, projects=args.projects)
    if spike is not None:
        # The organization holding the spiking project; the first when none does (as with one organization).
        owner = next((i for i, (_k, o) in enumerate(served) if spike[0] in o.projects), 0)
        served[owner] = (served[owner][0], dataclasses.replace(served[owner][1], spike=spike))
    (key, organization), others = served[0], served[1:]
    api = FakeOpenAIUsageAPI(key=key, organization=organization, port=args.port, now=args.now)
    for other_key, other in others:
        api.add_organization(other_key, other)
    api.controls.dense_groups = args.dense_groups
    api.controls.latency = args.latency
    api.controls.amount_format = args.amount_format
    api.controls.available_until = args.available_until
    api.controls.api_key_floor = None if args.api_key_floor < 0 else args.api_key_floor
    api.controls.costs_max_limit = args.costs_max_limit
    if args.fault_rate:
        aimed = served[args.fault_organization - 1][0] if args.fault_organization is not None else None
        api.faults.at_rate(args.fault_rate, _faults(args.fault_kinds, args.retry_after, aimed), seed=args.fault_seed)
    if args.available_until is not None and args.reveal_file:
        answer = api.api.handle
        reveal_file = Path(args.reveal_file)

        def handle(path: str, query: list[tuple[str, str]], authorization: str | None) -> tuple[int, dict[str, str], bytes]:
            if api.controls.available_until is not None and reveal_file.exists():
                api.controls.available_until = None
                print(f"late data revealed ({reveal_file} exists): every day up to now is reported", flush=True)
            return answer(path, query, authorization)

        api.api.handle = handle  # type: ignore[method-assign]
    if args.request_log:
        log = open(args.request_log, "a", buffering=1)  # noqa: SIM115 - open for the server's lifetime
        lock = threading.Lock()

        def record(count: int, entry: LoggedRequest) -> None:
            line = json.dumps(
                {"n": count, "path": entry.path, "status": entry.status, "fault": entry.fault, "organization_id": entry.organization_id}
            )
            with lock:
                log.write(line + "\n")

        api.after_request = record

    def ready(started: FakeOpenAIUsageAPI) -> None:
        # The first line stays one parseable line, so scripts can wait for it instead of sleeping.
        print(f"fake OpenAI usage API listening on {started.base_url}", flush=True)
        print("Point Airflow at it (paste into the shell that runs airflow; Ctrl-C here stops the server):", flush=True)
        if len(served) == 1:
            print(f"  {connection_export(started.base_url, started.key)}", flush=True)  # as it always was
        else:
            for number, (org_key, org) in enumerate(served, start=1):
                line = connection_export(started.base_url, org_key, conn_id=conn_id_of(number), organization_id=org.organization_id)
                print(f"  {line}", flush=True)
        if args.available_until is not None and args.reveal_after is not None:

            def reveal() -> None:
                started.controls.available_until = None
                print("late data revealed: every day up to now is reported", flush=True)

            timer = threading.Timer(args.reveal_after, reveal)
            timer.daemon = True
            timer.start()

    serve_forever(api, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
