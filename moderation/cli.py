"""The `moderation` command: moderate posts, run the pipeline's processes, query verdicts, serve the review page.

Each subcommand is a module with `add_parser(subparsers)`: the library's own in
moderation/commands/, and those of other packages (the pipeline's processes, in workers/commands/) found
through the entry-point group `moderation.commands`. This module only wires them together and maps errors
to exit codes."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from moderation.errors import ConfigError, DeviceUnavailable, ModerationError, PluginError

# OpenMP threads (numba's and torch's) spin-wait between parallel regions by default; with many small batches
# that cost as much CPU as the work itself (docs/benchmarks.md). Set before either runtime starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The library's own subcommand modules, in the order `moderation --help` lists them (before the others).
COMMANDS = ("scan", "produce", "db", "verdicts", "users", "serve")
COMMAND_GROUP = "moderation.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moderation", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"moderation.commands.{name}").add_parser(sub)
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        if ep.name not in COMMANDS:
            ep.load().add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except (ConfigError, DeviceUnavailable, PluginError) as exc:
        print(f"moderation: {exc}", file=sys.stderr)
        return 2
    except ModerationError as exc:
        print(f"moderation: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
