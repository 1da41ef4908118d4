"""Roll an endpoint back to its previous release, on demand.

    python -m flows.rollback ENDPOINT [--to ENDPOINT_CONFIG] [--timeout 3600] [--poll 10]

The previous release is found from the endpoint configs' release tags (tasks/lifecycle/rollback.py explains
how). The rollback holds the endpoint's release lock, so it never races a release of the same
endpoint. Exits non-zero when it fails; the last line printed is a JSON summary.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, task
from prefect.states import Failed, State

from flows import cli
from tasks.config import check_value
from tasks.core.logs import run_logger
from tasks.core.retry import task_options
from tasks.lifecycle import rollback as rollback_tasks
from tasks.lifecycle.lock import endpoint_lock, use_shared_lease_storage

DEFAULT_LOCK_WAIT_S = 900


@task(name="roll-back-endpoint", **task_options(retries=1))
def switch_back(
    endpoint: str, to_config: str | None, timeout_s: float, interval_s: float
) -> rollback_tasks.RollbackResult:
    return rollback_tasks.roll_back(endpoint, to_config=to_config, timeout_s=timeout_s, interval_s=interval_s)


@flow(name="rollback-endpoint", log_prints=True)
def rollback(
    endpoint: str,
    to_config: str | None = None,
    timeout_s: int = 3600,
    poll_interval_s: float = 10.0,
    wait_for_lock_s: int = DEFAULT_LOCK_WAIT_S,
) -> dict[str, Any] | State:
    """Put `endpoint` back on its previous release (or on `to_config`) and wait until it serves."""
    log = run_logger()
    try:
        with endpoint_lock(endpoint, timeout_s=wait_for_lock_s):
            result = switch_back(endpoint, to_config, timeout_s, poll_interval_s)
    except Exception as exc:
        message = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
        log.error("rollback of %s failed: %s", endpoint, message)
        return Failed(message=message, data={"endpoint_name": endpoint, "status": "failed", "error": message})
    log.info("endpoint %s: %s -> %s (%s)", endpoint, result.from_config, result.to_config, result.status)
    return result.summary()


def main(argv: list[str] | None = None) -> int:
    identity: dict[str, Any] = {"endpoint_name": None}
    return cli.run(lambda: _main(argv, identity), identity)


def _main(argv: list[str] | None, identity: dict[str, Any]) -> int:
    parser = cli.Parser(prog="python -m flows.rollback", description=__doc__.splitlines()[0])
    parser.add_argument("endpoint", metavar="ENDPOINT", help="name of the endpoint to roll back")
    parser.add_argument(
        "--to", dest="to_config", help="endpoint config to go back to (default: previous release)"
    )
    parser.add_argument(
        "--timeout",
        type=cli.whole_number(30, 14400),
        default=3600,
        help="seconds to wait for the endpoint, 30-14400 as timeouts.endpoint_s (default %(default)s)",
    )
    parser.add_argument(
        "--poll",
        type=cli.number(0.1, 300),
        default=10.0,
        help="seconds between status checks, 0.1-300 (default %(default)s)",
    )
    parser.add_argument(
        "--wait-for-lock",
        type=cli.whole_number(0, 86400),
        default=DEFAULT_LOCK_WAIT_S,
        help="seconds to wait while a release of the endpoint runs (default %(default)s)",
    )
    args = parser.parse_args(argv)
    identity["endpoint_name"] = args.endpoint
    check_value("ENDPOINT", args.endpoint, "sagemaker_name", subject=cli.COMMAND_LINE)
    if args.to_config is not None:
        check_value("--to", args.to_config, "sagemaker_name", subject=cli.COMMAND_LINE)
    use_shared_lease_storage()
    state = rollback(
        args.endpoint,
        to_config=args.to_config,
        timeout_s=args.timeout,
        poll_interval_s=args.poll,
        wait_for_lock_s=args.wait_for_lock,
        return_state=True,
    )
    return cli.print_summary(state, identity)


if __name__ == "__main__":
    sys.exit(main())
