"""`reprodl seeds`: a seed sweep's experiments, from `dvc exp show --json`, as mean +- std.

The sweep is DVC's own: `dvc exp run --queue -S 'seed=0,1,2'`, then `dvc queue start -j 2`.
This reads what `dvc exp show --json` lists under the baseline commit and keeps the experiments
that finished ("success") and differ from the baseline in `seed` only; queued, running and
failed ones, and those with any other param changed, are counted and left out. The newest
experiment of each seed counts once. For every headline metric (the rows of the study page,
reprodl.report) it gives the mean, the sample standard deviation (n - 1), min, max and n; for
every claim (reprodl.claims), in how many seeds it holds.

    agg = aggregate(json.loads(dvc_exp_show_output))   # SeedsError when fewer than 2 seeds finished
    io.write_json("seeds/seeds.json", agg); io.write_text("reports/seeds.md", render_markdown(agg))
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from . import claims
from .claims import Missing
from .report import EXPERIMENTS, Row

PARAMS_FILE = "params.yaml"


class SeedsError(ValueError):
    """The sweep cannot be aggregated (no baseline, fewer than two finished seeds)."""


def aggregate(exp_show: list[dict], rev: str | None = None) -> dict:
    baseline = _baseline(exp_show, rev)
    base_params = _params(baseline)
    if base_params is None:
        raise SeedsError(f"the baseline {baseline['rev'][:12]} has no {PARAMS_FILE} in `dvc exp show`")
    skipped: dict[str, list[str]] = {}
    by_seed: dict[int, dict] = {}
    for exp_range in baseline.get("experiments") or []:
        exp = exp_range["revs"][0]
        name = exp_range.get("name") or exp.get("name") or exp["rev"][:7]
        state = (exp_range.get("executor") or {}).get("state") or ("failed" if exp.get("error") else "success")
        if exp.get("error") and state == "success":
            state = "failed"
        params = _params(exp)
        if state != "success" or params is None:
            skipped.setdefault(state, []).append(name)
            continue
        if _without_seed(params) != _without_seed(base_params):
            skipped.setdefault("other params changed", []).append(name)
            continue
        seed = params["seed"]
        found = {"seed": seed, "name": name, "rev": exp["rev"], "timestamp": (exp.get("data") or {}).get("timestamp") or "", "metrics": _metrics(exp)}
        if seed in by_seed and by_seed[seed]["timestamp"] >= found["timestamp"]:
            skipped.setdefault("older run of the same seed", []).append(name)
            continue
        if seed in by_seed:
            skipped.setdefault("older run of the same seed", []).append(by_seed[seed]["name"])
        by_seed[seed] = found
    runs = [by_seed[s] for s in sorted(by_seed)]
    if len(runs) < 2:
        left_out = "; ".join(f"{k}: {', '.join(v)}" for k, v in skipped.items()) or "none"
        raise SeedsError(
            f"{len(runs)} finished experiment(s) of commit {baseline['rev'][:12]} differ from it in seed only; at least 2 are needed "
            f"(left out: {left_out}). Run: dvc exp run --queue -S 'seed=0,1,2' && dvc queue start -j 2"
        )
    return {
        "baseline": baseline["rev"],
        "profile": base_params.get("data", {}).get("profile", "?"),
        "seeds": [r["seed"] for r in runs],
        "experiments": [{k: r[k] for k in ("seed", "name", "rev")} for r in runs],
        "skipped": skipped,
        "metrics": _aggregate_metrics(runs),
        "claims": _aggregate_claims(runs),
    }


def _baseline(exp_show: list[dict], rev: str | None) -> dict:
    rows = [row for row in exp_show if row.get("rev") != "workspace"]
    if rev is not None:
        rows = [row for row in rows if row["rev"].startswith(rev) or row.get("name") == rev]
    if not rows:
        raise SeedsError(f"`dvc exp show` lists no baseline commit{f' matching {rev}' if rev else ''}")
    return rows[0]  # dvc exp show lists HEAD first


def _params(exp: dict) -> dict | None:
    entry = ((exp.get("data") or {}).get("params") or {}).get(PARAMS_FILE) or {}
    return entry.get("data")


def _without_seed(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != "seed"}


def _metrics(exp: dict) -> dict[str, dict]:
    """Every metrics file that DVC could read, merged (top-level key -> tree), as load_metrics does."""
    merged: dict[str, dict] = {}
    for entry in ((exp.get("data") or {}).get("metrics") or {}).values():
        if isinstance(entry.get("data"), dict):
            merged.update(entry["data"])
    return merged


def _rows(metrics: dict[str, dict]) -> list[tuple[str, Row]]:
    out = []
    for exp in EXPERIMENTS:
        if exp.key in metrics:
            try:
                out += [(exp.title.split(".")[0].split(":")[0], row) for row in exp.rows(metrics[exp.key], {})]
            except Missing:
                continue
    return out


def _aggregate_metrics(runs: list[dict]) -> list[dict]:
    table: dict[str, dict] = {}
    for run in runs:
        for experiment, row in _rows(run["metrics"]):
            if row.key is None or isinstance(row.value, (str, bool)) or not math.isfinite(row.value):
                continue
            entry = table.setdefault(row.key, {"key": row.key, "label": f"{experiment} {row.label}", "fmt": row.fmt, "values": {}})
            entry["values"][str(run["seed"])] = float(row.value)
    out = []
    for entry in table.values():
        values = list(entry["values"].values())
        out.append({
            **entry,
            "n": len(values),
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
        })
    return out


def _aggregate_claims(runs: list[dict]) -> list[dict]:
    per_seed = {run["seed"]: claims.evaluate(run["metrics"]) for run in runs}
    out = []
    for i, claim in enumerate(claims.CLAIMS):
        statuses = {str(seed): verdicts[i].status for seed, verdicts in per_seed.items()}
        ran = [s for s in statuses.values() if s != claims.NOT_RUN]
        out.append({"id": claim.id, "statement": claim.statement, "holds": sum(s == claims.HOLDS for s in ran), "of": len(ran), "per_seed": statuses})
    return out


# --------------------------------------------------------------------------- reports/seeds.md


def _fmt(value: float, fmt: str) -> str:
    return f"{value:{fmt}}"


def render_markdown(agg: dict) -> str:
    seeds = ", ".join(map(str, agg["seeds"]))
    out = [
        f"# Seeds: {len(agg['seeds'])} seeds of commit {agg['baseline'][:12]} ({agg['profile']} profile)",
        "",
        "Generated by `reprodl seeds` from `dvc exp show --json`: do not edit. Every experiment below differs from the baseline "
        "commit in `seed` only; std is the sample standard deviation (n - 1). A claim that holds in some seeds and not in others "
        "is not a finding.",
        "",
        "| seed | experiment | rev |",
        "|---|---|---|",
        *(f"| {e['seed']} | {e['name']} | {e['rev'][:12]} |" for e in agg["experiments"]),
        "",
    ]
    if agg["skipped"]:
        out += ["Left out: " + "; ".join(f"{why}: {', '.join(names)}" for why, names in agg["skipped"].items()) + ".", ""]
    out += ["## Claims over seeds", "", f"| claim | holds in | per seed ({seeds}) |", "|---|---|---|"]
    for c in agg["claims"]:
        verdict = "not run" if c["of"] == 0 else f"{c['holds']} of {c['of']}" + (" (flips: not a finding)" if 0 < c["holds"] < c["of"] else "")
        out.append(f"| {c['statement']} | {verdict} | {', '.join(c['per_seed'].values())} |")
    out += ["", "## Headline metrics", "", f"| metric | mean ± std | min | max | n | per seed ({seeds}) |", "|---|---|---|---|---|---|"]
    for m in agg["metrics"]:
        fmt = m["fmt"]
        out.append(f"| {m['label']} | {_fmt(m['mean'], fmt)} ± {_fmt(m['std'], fmt.lstrip('+'))} | {_fmt(m['min'], fmt)} | {_fmt(m['max'], fmt)} | {m['n']} | "
                   + ", ".join(_fmt(v, fmt) for v in m["values"].values()) + " |")
    return "\n".join(out) + "\n"


def exp_show_json(timeout: float = 600) -> Any:
    """`dvc exp show --json` of the repository in the current directory, parsed."""
    import json
    import subprocess

    done = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SeedsError(f"dvc exp show --json failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)
