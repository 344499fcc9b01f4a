"""Record runs: every benchmark N times, then the rows of docs/performance.md's tables.

Each benchmark ends its output with one `record: {...}` line (timing.print_record): date, CPU
kind, native bf16 or not, ratio to its baseline, fraction of this machine's limit, target and
whether it holds. This script runs each benchmark `--runs` times (in record mode unless
--quick), one after another, echoes their output to stderr (and to --log-dir when given),
and prints one Markdown table per benchmark on stdout, ready to paste:

    python benchmarks/record.py                              # 3 record runs of each (make bench-record)
    python benchmarks/record.py --note "quiet machine" --log-dir /tmp/bench
    python benchmarks/record.py --only grid_trainer --runs 1 --quick

Run it on a quiet machine: the grid trainer and t-SNE with OMP_NUM_THREADS=1, as the pipeline
runs them; the others at torch's default threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> environment the benchmark runs with (the threads the pipeline uses for that work)
BENCHMARKS: dict[str, dict[str, str]] = {
    "e1_engine": {},
    "grid_trainer": {"OMP_NUM_THREADS": "1"},
    "feature_extraction": {},
    "numpy_conv1d": {},
    "tsne": {"OMP_NUM_THREADS": "1"},
}
HEADER = ("| date | CPU kind | bf16 native? | ratio | fraction of limit | target | holds? | conditions |\n"
          "|---|---|---|---|---|---|---|---|")


def parse_record(output: str) -> dict | None:
    """The benchmark's `record: {...}` line, or None."""
    for line in reversed(output.splitlines()):
        if line.startswith("record: "):
            return json.loads(line.removeprefix("record: "))
    return None


def row(record: dict, conditions: str) -> str:
    """One Markdown row of a benchmark's table."""
    ratio = record["ratio"]
    fraction = record.get("fraction")
    limit = ("n/a" if fraction is None
             else f"{fraction:.0%} ({record['ours_gflops']:.2f} of {record['limit_gflops']:.2f} GFLOP/s, {record.get('verdict', '')})")
    holds = {True: "yes", False: "**no**", None: "n/a"}[record.get("holds")]
    if record.get("holds") is None and record["benchmark"] == "feature_extraction" and record["precision"] == "fp32":
        holds = "n/a (fp32 case)"
    elif record["target"] == "none":
        holds = "- (no target)"
    run = f"{record['precision']}{', compiled' if record.get('compiled') else ''}, {record['threads']} thread(s)"
    return (f"| {record['date']} | {record['cpu']} | {'yes' if record['bf16_native'] else 'no'} | {ratio:.2f}x | {limit} | "
            f"{record['target']} | {holds} | {', '.join(p for p in (conditions, run) if p)} |")


def run_once(name: str, quick: bool, log: Path | None) -> dict | None:
    env = {**os.environ, **BENCHMARKS[name]}
    command = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])]
    print(f"$ {' '.join(f'{k}={v}' for k, v in BENCHMARKS[name].items())} {' '.join(command)}", file=sys.stderr, flush=True)
    lines = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            print(line, end="", file=sys.stderr, flush=True)
            lines.append(line)
    output = "".join(lines)
    if log is not None:
        log.write_text(output)
    if process.returncode != 0:
        print(f"{name} failed (exit {process.returncode})", file=sys.stderr)
        return None
    return parse_record(output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick (not a record)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="these benchmarks only")
    parser.add_argument("--note", default="", help="the conditions column, e.g. 'quiet machine' or 'shared machine'")
    parser.add_argument("--log-dir", help="keep each run's whole output here")
    args = parser.parse_args(argv)
    log_dir = Path(args.log_dir) if args.log_dir else None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    conditions = ", ".join(p for p in (args.note, "--quick" if args.quick else "") if p)
    tables = []
    for name in args.only or list(BENCHMARKS):
        rows = []
        for i in range(1, args.runs + 1):
            record = run_once(name, args.quick, log_dir / f"{name}-{i}.txt" if log_dir else None)
            rows.append(row(record, conditions) if record else f"| | | | run {i} failed | | | | {conditions} |")
        tables.append(f"{name}\n\n{HEADER}\n" + "\n".join(rows))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
