"""CPU time of every process on the machine, by role, read from /proc: what a benchmark's work cost in total,
including the services it talks to (PostgreSQL, Redis, the brokers), not only its own process."""

from __future__ import annotations

import os
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Which process a command line belongs to: the pipeline's own, and the services on this machine.
_ROLES = (
    ("cli worker", "worker"),
    ("cli consume", "consumer"),
    ("cli relay", "relay"),
    ("postgres", "PostgreSQL"),
    ("redis-server", "Redis"),
    ("tansu", "Kafka broker"),
    ("beam.smp", "RabbitMQ"),
)


def cpu_by_role() -> dict[str, float]:
    """CPU seconds (user + system) so far of every process on the machine, summed by role (from /proc)."""
    out: dict[str, float] = {}
    own = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        role = "this benchmark" if int(pid) == own else next((n for needle, n in _ROLES if needle in command), "other")
        out[role] = out.get(role, 0.0) + seconds
    return out
