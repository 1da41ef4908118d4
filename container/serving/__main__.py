"""`docker run IMAGE serve` ends up here: python -m serving serve."""

from __future__ import annotations

import logging
import sys

from serving.logs import configure_logging
from serving.settings import Settings, SettingsError


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "serve"
    if command != "serve":
        configure_logging("INFO")
        logging.getLogger("serving").error(
            "unknown command %r: this image only serves models (SageMaker runs it as `IMAGE serve`)", command
        )
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        configure_logging("INFO")
        logging.getLogger("serving").error("invalid configuration: %s", exc)
        return 1
    configure_logging(settings.log_level)
    from serving.supervisor import Supervisor

    return Supervisor(settings).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
