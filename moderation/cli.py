"""The `moderation` command. Each subcommand lives in moderation/commands/<name>.py and registers itself
through `add_parser(subparsers)`; this module only wires them together and maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from moderation.errors import ConfigError, DeviceUnavailable, ModerationError, PluginError

# Subcommand modules, in the order `moderation --help` lists them.
COMMANDS = ("scan", "produce", "consume", "worker", "relay", "lag", "db", "verdicts", "users", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moderation", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"moderation.commands.{name}").add_parser(sub)
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
