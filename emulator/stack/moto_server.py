"""moto's server, with the CloudWatch rules moto lacks installed (emulator/cloudwatch/moto_statistics.py).

`python -m emulator.stack.moto_server -H HOST -p PORT` takes moto_server's own arguments.
"""

from __future__ import annotations

import sys

from moto import server

from emulator.cloudwatch.moto_statistics import install


def main(argv: list[str] | None = None) -> None:
    install()
    server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
