"""python -m emulator.hub --root DIR --host 127.0.0.1 --port 4588"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from emulator.hub.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.hub",
        description="Hugging Face Hub-compatible file server over a folder of repos",
    )
    parser.add_argument("--root", type=Path, required=True, help="store folder (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4588)
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    uvicorn.run(create_app(root), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
