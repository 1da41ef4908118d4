"""python -m emulator up | down | env | status

eval "$(python -m emulator up)"    start what is not running, then export the client variables
python -m emulator env             print the export lines again
python -m emulator status          health of every part
python -m emulator down [PART…]    stop what `up` started and remove the emulator's containers
"""

from __future__ import annotations

import argparse
import sys

from emulator import stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description="The local AWS stack.")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start what is not running; print export lines on stdout")
    start.add_argument(
        "parts", nargs="*", metavar="PART", help=f"default: all of {', '.join(stack.PART_NAMES)}"
    )
    stop = commands.add_parser("down", help="stop what up started; remove the emulator's containers")
    stop.add_argument(
        "parts", nargs="*", metavar="PART", help="default: every part, and docker if up started it"
    )
    commands.add_parser("env", help="print the export lines for the local stack")
    commands.add_parser("status", help="show each part's health")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            stack.up(args.parts or stack.PART_NAMES)
            print("\n".join(stack.client_exports(build_base_image=True)))
        elif args.command == "down":
            stack.down(args.parts or [*stack.PART_NAMES, "docker"])
        elif args.command == "env":
            print("\n".join(stack.client_exports(build_base_image=False)))
        elif args.command == "status":
            rows = stack.status()
            width = max(len(r[0]) for r in rows)
            for name, address, state in rows:
                print(f"{name:<{width}}  {address:<28}  {state}")
            return 0 if all(r[2].startswith("up") for r in rows) else 1
    except stack.StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
