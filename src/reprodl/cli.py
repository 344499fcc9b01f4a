"""`reprodl check`: validate params.yaml and sources.yaml at once, without running anything.

    reprodl check                 # params.yaml and sources.yaml of the current folder
    reprodl check -p other.yaml   # another params file

Prints one line per bad input (`params.yaml: e1.convnet.momentun is not a known key (did you
mean momentum?)`) and exits 2, or prints what it checked and exits 0. It imports no torch, so
it answers in about a second; every stage runs the same checks before it starts work.
"""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, load_params, load_sources


def check(params_file: str, sources_file: str) -> list[str]:
    """The error lines of both files (empty: all good)."""
    lines: list[str] = []
    params = None
    try:
        params = load_params(params_file)
    except ConfigError as err:
        lines += err.lines
    needed = params.data.datasets if params is not None and params.data.profile == "full" else []
    try:
        load_sources(sources_file, needed=needed)
    except ConfigError as err:
        lines += err.lines
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reprodl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="validate params.yaml and sources.yaml")
    checker.add_argument("-p", "--params", default="params.yaml")
    checker.add_argument("-s", "--sources", default="sources.yaml")
    args = parser.parse_args(argv)
    lines = check(args.params, args.sources)
    if lines:
        print("\n".join(lines), file=sys.stderr)
        return 2
    print(f"{args.params} and {args.sources}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
