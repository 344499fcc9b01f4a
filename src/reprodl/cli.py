"""The `reprodl` command.

`reprodl check`: validate params.yaml and sources.yaml at once, without running anything.

    reprodl check                 # params.yaml and sources.yaml of the current folder
    reprodl check -p other.yaml   # another params file

Prints one line per bad input (`params.yaml: e1.convnet.momentun is not a known key (did you
mean momentum?)`) and exits 2, or prints what it checked and exits 0. It imports no torch, so
it answers in about a second; every stage runs the same checks before it starts work.

`reprodl seeds`: aggregate a seed sweep (`dvc exp run --queue -S 'seed=0,1,2'`, then
`dvc queue start -j 2`) from `dvc exp show --json` into mean +- std per headline metric and,
per claim, the seeds it holds in (reprodl.seeds): seeds/seeds.json, which the report stage
shows, and reports/seeds.md.

    reprodl seeds                          # runs dvc exp show --json here
    reprodl seeds --from exp.json          # a saved `dvc exp show --json` ("-": standard input)

`reprodl memory-plan`: what each full-profile dataset costs in RAM and disk at params.yaml's
data.image_size and split, from the datasets' official image counts (reprodl.datasets.memory_plan),
as the Markdown table of docs/full-profile.md (tests/test_memory_plan.py keeps the two equal).

    reprodl memory-plan
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


def seeds(source: str | None, rev: str | None, json_path: str, md_path: str) -> str:
    """Aggregate the sweep, write both files; the line to print. SeedsError when it cannot."""
    import json

    from . import io
    from .seeds import aggregate, exp_show_json, render_markdown

    if source is None:
        exp_show = exp_show_json()
    else:
        exp_show = json.loads(sys.stdin.read() if source == "-" else open(source).read())
    agg = aggregate(exp_show, rev)
    io.write_json(json_path, agg)
    io.write_text(md_path, render_markdown(agg))
    return f"{len(agg['seeds'])} seeds ({', '.join(map(str, agg['seeds']))}) of {agg['baseline'][:12]} -> {json_path}, {md_path}"


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


PLAN_BATCH = 256  # images: the largest batch of the catalogue's stages (e9.baseline.feature_batch_size)


def memory_plan_markdown(params_file: str) -> str:
    """The memory plan of every full-profile dataset, as a Markdown table."""
    from .datasets import DATASETS, SPLITS, memory_plan

    data = load_params(params_file).data
    rows = [
        f"Full profile at data.image_size {data.image_size} px, split {'/'.join(f'{f:g}' for f in data.split.fractions)} "
        f"(E9's sets {'/'.join(f'{f:g}' for f in data.fine_grained_split.fractions)}), official test splits "
        f"{'kept' if data.official_test else 'pooled'}:",
        "",
        f"| dataset | images (train / val / test) | one image (uint8) | prepared, all splits | prepare's peak RAM | "
        f"an experiment's data (+ {PLAN_BATCH} images as float32 at {data.image_size} px) |",
        "|---|---|---|---|---|---|",
    ]
    for name, info in DATASETS.items():
        if info.full_images is None:
            continue
        plan = memory_plan(name, data.image_size, data.split.fractions, fine_grained_fractions=data.fine_grained_split.fractions,
                           official_test=data.official_test)
        images = " / ".join(f"{plan.images[s]:,}" for s in SPLITS)
        shape = "x".join(map(str, plan.shape))
        rows.append(f"| {name} | {images} | {shape} | {_size(plan.total_bytes)} | {_size(plan.prepare_peak_bytes)} | {_size(plan.experiment_bytes(PLAN_BATCH, data.image_size))} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reprodl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="validate params.yaml and sources.yaml")
    checker.add_argument("-p", "--params", default="params.yaml")
    checker.add_argument("-s", "--sources", default="sources.yaml")
    sweep = commands.add_parser("seeds", help="aggregate a seed sweep from dvc exp show --json")
    sweep.add_argument("--from", dest="source", help="a saved `dvc exp show --json` output ('-': stdin); default: run it")
    sweep.add_argument("--rev", help="the baseline commit (default: the first dvc exp show lists, HEAD)")
    sweep.add_argument("--json", default="seeds/seeds.json", help="the aggregate the report stage reads")
    sweep.add_argument("--markdown", default="reports/seeds.md")
    planner = commands.add_parser("memory-plan", help="RAM and disk of each full-profile dataset (Markdown)")
    planner.add_argument("-p", "--params", default="params.yaml")
    args = parser.parse_args(argv)
    if args.command == "memory-plan":
        try:
            print(memory_plan_markdown(args.params), end="")
        except ConfigError as err:
            print("\n".join(err.lines), file=sys.stderr)
            return 2
        return 0
    if args.command == "seeds":
        from .seeds import SeedsError

        try:
            print(seeds(args.source, args.rev, args.json, args.markdown))
        except SeedsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    lines = check(args.params, args.sources)
    if lines:
        print("\n".join(lines), file=sys.stderr)
        return 2
    print(f"{args.params} and {args.sources}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
