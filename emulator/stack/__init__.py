"""Start, stop and inspect every local server of the stack.

`up` is idempotent: a part whose health check already answers is left alone, the others are started
detached (own session, so they outlive the shell or test run that started them) with their pid in
.state/pids/ and their output in .state/logs/, and each is waited for with a timeout; a part that
does not come up is reported with the last lines of its log. `down` stops, by pid, what `up`
started, and removes the emulator's containers.
"""

from emulator.stack.commands import (
    base_image,
    client_exports,
    down,
    ensure_docker,
    running_parts,
    status,
    up,
)
from emulator.stack.parts import PART_NAMES, PARTS, Part, StackError, part

__all__ = [
    "PARTS",
    "PART_NAMES",
    "Part",
    "StackError",
    "base_image",
    "client_exports",
    "down",
    "ensure_docker",
    "part",
    "running_parts",
    "status",
    "up",
]
