"""What the flows' command lines share: the JSON summary as the last line, and the exit code.

Every outcome ends with one JSON line on stdout: 0 when the run completed, 2 when the input was refused
before anything was created (status `invalid`: a bad flag, config file or config value, named with its
fix), 1 for everything else (status `failed`, including an exception nobody expected, as
"<Class>: <message>").
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from prefect.states import State

from tasks.core.errors import ConfigError

COMMAND_LINE = "command line"


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are ConfigErrors naming the argument and the fix, so they end in the
    JSON summary (status `invalid`, exit 2) like any other refused input, not in argparse's usage text."""

    def error(self, message: str) -> NoReturn:
        raise usage_error(message, self.prog)


def usage_error(message: str, prog: str) -> ConfigError:
    """argparse's error message as a ConfigError naming the argument it is about."""
    help_fix = f"see `{prog} --help`"
    about = re.match(r"argument (?P<name>[^:]+): (?P<rest>.*)\Z", message, re.DOTALL)
    if about:
        # "--set/-s" names one option by its spellings; the first is the one documented.
        name = about["name"].split("/")[0]
        problem, _, fix = about["rest"].partition("; fix: ")
        return ConfigError(name, problem, fix or help_fix, subject=COMMAND_LINE)
    required = re.match(r"the following arguments are required: (?P<names>.*)\Z", message)
    if required:
        names = required["names"]
        return ConfigError(
            names.split(", ")[0], "is required", f"give {names}; {help_fix}", subject=COMMAND_LINE
        )
    unknown = re.match(r"unrecognized arguments: (?P<args>.*)\Z", message)
    if unknown:
        first = unknown["args"].split()[0] if unknown["args"].split() else unknown["args"]
        return ConfigError(
            first, "is not an argument of this command", f"remove it; {help_fix}", subject=COMMAND_LINE
        )
    return ConfigError("arguments", message, help_fix, subject=COMMAND_LINE)


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type` taking a whole number from `low` to `high`."""
    takes = f"a whole number from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; fix: give {takes}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; fix: give {takes}")
        return value

    return parse


def number(low: float, high: float) -> Callable[[str], float]:
    """An argparse `type` taking a finite number from `low` to `high`."""
    takes = f"a number from {low:g} to {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; fix: give {takes}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; fix: give {takes}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; fix: give {takes}")
        return value

    return parse


def error_text(exc: BaseException) -> str:
    """'<Class>: <message>'; our own errors already start with their class name."""
    text = str(exc)
    name = type(exc).__name__
    if text.startswith(name):
        return text
    return f"{name}: {text}" if text else name


def run(body: Callable[[], int], identity: dict[str, Any]) -> int:
    """Run a command line's `body`; whatever it raises still ends in the JSON summary.

    `identity` (release_id, endpoint_name…) is filled in by `body` as it learns it, and heads the
    summary printed for a refusal or an unexpected error."""
    try:
        return body()
    except ConfigError as exc:
        return refuse(exc, identity)
    except KeyboardInterrupt:
        print(json.dumps({**identity, "status": "failed", "error": "KeyboardInterrupt: interrupted"}))
        return 130
    except Exception as exc:
        # Not bad input: a fault of ours or of the environment. The traceback helps whoever reads stderr.
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({**identity, "status": "failed", "error": error_text(exc)}, default=str))
        return 1


def refuse(exc: ConfigError, identity: dict[str, Any]) -> int:
    """Bad input, refused before anything was created: the error on stderr, the summary (with the field
    named, for scripts), exit 2."""
    print(str(exc), file=sys.stderr)
    summary = {**identity, "status": "invalid", "error": str(exc), "field": exc.field}
    print(json.dumps(summary, default=str))
    return 2


def print_summary(state: State, identity: dict[str, Any]) -> int:
    """Print the run's JSON summary, or `identity` with the error.

    Exit code 0 when it completed, 2 when the flow refused its input before creating anything (summary
    status `invalid`, as for a config refused on load), else 1."""
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, dict):
        error = error_text(summary) if isinstance(summary, BaseException) else str(summary)
        summary = {**identity, "status": "failed", "error": error}
    elif "status" not in summary:
        summary = {**summary, "status": "succeeded" if state.is_completed() else "failed"}
    print(json.dumps(summary, default=str))
    if state.is_completed():
        return 0
    return 2 if summary.get("status") == "invalid" else 1
