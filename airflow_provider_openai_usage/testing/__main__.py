"""``python -m airflow_provider_openai_usage.testing serve [--port PORT] [--key KEY] [--seed N] [--projects N]``.

On start it prints one parseable line (``... listening on <base url>``, so scripts wait for it instead
of sleeping), then the ``export AIRFLOW_CONN_OPENAI_USAGE_DEFAULT=...`` line that points Airflow at
this server, ready to paste into another shell.
"""

from __future__ import annotations

import argparse
import sys

from airflow_provider_openai_usage.testing.data import PROJECT_POOL, FakeOrganization
from airflow_provider_openai_usage.testing.server import DEFAULT_KEY, FakeOpenAIUsageAPI, connection_export, serve_forever


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
    args = parser.parse_args(argv)

    organization = FakeOrganization(seed=args.seed, projects=PROJECT_POOL[: args.projects])
    api = FakeOpenAIUsageAPI(key=args.key, organization=organization, port=args.port, now=args.now)
    api.controls.dense_groups = args.dense_groups
    api.controls.latency = args.latency
    api.controls.amount_format = args.amount_format

    def ready(started: FakeOpenAIUsageAPI) -> None:
        # The first line stays one parseable line, so scripts can wait for it instead of sleeping.
        print(f"fake OpenAI usage API listening on {started.base_url}", flush=True)
        print("Point Airflow at it (paste into the shell that runs airflow; Ctrl-C here stops the server):", flush=True)
        print(f"  {connection_export(started.base_url, started.key)}", flush=True)

    serve_forever(api, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
