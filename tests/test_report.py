"""The study page (reprodl.report, stages/report.py): built from the stages' outputs, honest
about what did not run, self-contained, and declared in dvc.yaml with every input it reads.

The inputs are the repository's committed outputs (real shapes), copied where a test changes
them; E9 is synthesised in the shape its stage writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from configs import FULL_PROFILE, ROOT, compose
from reprodl import claims, io, references
from reprodl.report import EXPERIMENTS, GitState, Inputs, build_page, data_note, git_state, markdown_html, render_html, render_markdown
from reprodl.seeds import aggregate

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = {name: stage.get("do", stage) for name, stage in DVC_YAML["stages"].items()}
GIT = GitState("0123456789abcdef0123456789abcdef01234567", params_modified=False)


def params(**overrides) -> dict:
    return compose(overrides).model_dump(mode="json")


@pytest.fixture
def inputs(tmp_path) -> Inputs:
    """The committed metrics and timings, copied (tests add and remove files); reports and plots read in place."""
    shutil.copytree(ROOT / "metrics", tmp_path / "metrics")
    shutil.copytree(ROOT / "timings", tmp_path / "timings")
    for path in (tmp_path / "metrics").glob("e9.json"):  # E9 is synthesised where a test wants it
        path.unlink()
    return Inputs(metrics=tmp_path / "metrics", timings=tmp_path / "timings", reports=ROOT / "reports", plots=ROOT / "plots", seeds=tmp_path / "seeds" / "seeds.json")


def page_of(inputs: Inputs, tmp_path: Path, p: dict | None = None, git: GitState = GIT):
    return build_page(p or params(), inputs, git=git, html_dir=tmp_path / "out")


class Parsed(HTMLParser):
    """The page's img srcs, external resources, ids and claim rows."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.external, self.ids, self.claim_rows = [], [], set(), {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag in ("script", "link", "iframe") or (tag == "img" and re.match(r"\w+://", a["src"])):
            self.external.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "tr" and "data-claim" in a:
            self.claim_rows[a["data-claim"]] = a["data-status"]


def section_html(text: str, key: str) -> str:
    return re.search(rf'<section id="{key}".*?</section>', text, re.S).group(0)


def e9_files(inputs: Inputs, vit: dict[str, float], mobile: dict[str, float]) -> None:
    """metrics/e9.json and timings/e9.json as the E9 stage writes them."""
    io.write_json(inputs.metrics / "e9.json", {"e9": {"dataset": "digit_pairs", "profile": "embedded", "subsets": {
        s: {"baseline": {"accuracy": mobile[s], "top3_accuracy": mobile[s] + 0.1}, "vit": {"accuracy": vit[s], "top3_accuracy": vit[s] + 0.05},
            "vit_minus_baseline": vit[s] - mobile[s]} for s in vit}}})
    io.write_json(inputs.timings / "e9.json", {"stage_seconds": 42.0, "subsets": {
        s: {"baseline": {"train_seconds": 10.0, "eval_seconds": 1.0}, "vit": {"train_seconds": 25.0, "eval_seconds": 2.0}, "train_seconds_ratio": 2.5} for s in vit}})


# --------------------------------------------------------------------------- the page


def test_every_experiment_has_a_section_and_every_claim_a_row(inputs, tmp_path):
    page = page_of(inputs, tmp_path)
    text = render_html(page)
    parsed = Parsed(text)
    assert {e.key for e in EXPERIMENTS} <= parsed.ids
    assert list(parsed.claim_rows) == [c.id for c in claims.CLAIMS]
    md = render_markdown(page)
    for exp in EXPERIMENTS:
        assert f"## {exp.title}" in md
    for claim in claims.CLAIMS:
        assert claim.statement.replace("|", "\\|") in md


def test_an_experiment_without_metrics_is_not_run_and_shows_no_number(inputs, tmp_path):
    (inputs.metrics / "e8.json").unlink()
    page = page_of(inputs, tmp_path)
    text = render_html(page)
    e8 = section_html(text, "e8")
    assert "Not run" in e8 and "<table" not in e8 and "<img" not in e8
    assert not re.search(r"\d\.\d", e8), "no number for an experiment that did not run"
    assert Parsed(text).claim_rows["e8_order"] == claims.NOT_RUN
    assert Parsed(text).claim_rows["e9_vit"] == claims.NOT_RUN
    e8_md = render_markdown(page).split("## E8.")[1].split("\n## ")[0]
    assert "Not run" in e8_md and not re.search(r"\d\.\d", e8_md)


def test_e9_in_the_shape_its_stage_writes(inputs, tmp_path):
    vit, mobile = {"13": 0.81, "28": 0.74}, {"13": 0.72, "28": 0.66}
    e9_files(inputs, vit, mobile)
    page = page_of(inputs, tmp_path)
    section = next(s for s in page.sections if s.experiment.key == "e9")
    assert section.ran
    rows = {r.key: r for r in section.rows if r.key}
    for s in vit:
        assert rows[f"e9.subsets.{s}.vit.accuracy"].value == vit[s]
        assert rows[f"e9.subsets.{s}.vit.accuracy"].reference == references.E9["vit"]
        assert rows[f"e9.subsets.{s}.baseline.accuracy"].reference == references.E9["baseline"]
        assert f"e9.subsets.{s}.baseline.top3_accuracy" in rows
    assert any("ViT / frozen MobileNetV2" in r.label and r.value == "2.50x" for r in section.rows)
    assert dict(section.what_ran)["wall time"] == "42.0 s"
    assert Parsed(render_html(page)).claim_rows["e9_vit"] == claims.HOLDS
    e9_files(inputs, {"13": 0.81, "28": 0.6}, mobile)
    assert Parsed(render_html(page_of(inputs, tmp_path))).claim_rows["e9_vit"] == claims.FAILS


def test_ours_is_labelled_with_the_profile(inputs, tmp_path):
    embedded = page_of(inputs, tmp_path)
    html_text, md = render_html(embedded), render_markdown(embedded)
    ran = [s for s in embedded.sections if s.ran]
    assert html_text.count("ours (embedded)") == len(ran) and md.count("ours (embedded)") == len(ran)
    assert "our numbers (embedded)" in html_text and "Embedded profile." in html_text and "Embedded profile." in md
    full = page_of(inputs, tmp_path, params(**FULL_PROFILE))
    full_html = render_html(full)
    assert "ours (embedded)" not in full_html and "ours (full)" in full_html and "Embedded profile." not in full_html


def test_the_page_states_its_commit_and_params(inputs, tmp_path):
    p = params(**{"e1.convnet.lr": 0.07})
    page = page_of(inputs, tmp_path, p, GitState("fedcba9876543210" * 2 + "01234567", params_modified=True))
    text, md = render_html(page), render_markdown(page)
    for out in (text, md):
        assert "commit fedcba987654" in out and "params.yaml differs from that commit" in out
    block = md.split("```yaml\n")[-1].split("```")[0]
    assert yaml.safe_load(block) == p
    assert "params.yaml as committed" in render_html(page_of(inputs, tmp_path))


def test_the_page_needs_no_network_and_every_image_exists(inputs, tmp_path):
    page = page_of(inputs, tmp_path)
    parsed = Parsed(render_html(page))
    assert parsed.images and not parsed.external
    for src in parsed.images:
        assert (page.html_dir / src).resolve().is_file(), src
    md_images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", render_markdown(page))
    assert sorted(md_images) == sorted(parsed.images)
    expected = {p for s in page.sections if s.ran for folder in s.experiment.plots for p in (inputs.plots / folder / "figures").glob("*.png")}
    assert {(page.html_dir / src).resolve() for src in parsed.images} == {p.resolve() for p in expected}, "every figure, once"


def test_reference_column_reads_the_references_module(inputs, tmp_path):
    page = page_of(inputs, tmp_path)
    rows = {r.key: r for s in page.sections for r in s.rows if r.key}
    assert rows["e1.convnet.test.accuracy"].reference == references.E1["convnet"]["full"]
    assert rows["e8.scratch.val.accuracy"].reference == references.E8_VAL["scratch"]
    assert rows["e7.finetuned.test.map_voc07"].reference == references.E7["finetuned"]["test"]
    metrics = json.loads((inputs.metrics / "e1.json").read_text())["e1"]
    assert rows["e1.convnet.test.accuracy"].value == metrics["convnet"]["test"]["accuracy"]


def test_what_ran_names_data_params_precision_and_wall_time(inputs, tmp_path):
    page = page_of(inputs, tmp_path)
    e7 = dict(next(s for s in page.sections if s.experiment.key == "e7").what_ran)
    p = params()
    assert e7["profile"] == "embedded" and p["e7"]["dataset"] in e7["data"] and "stand-in for VOC2007" in e7["data"]
    assert f"image_size = {p['e7']['image_size']}" in e7["key params"]
    timings = [json.loads((inputs.timings / f"{st}.json").read_text())["stage_seconds"] for st in ("e7_features", "e7_finetune", "e7")]
    assert e7["wall time"].startswith(f"{sum(timings):.1f} s")
    metrics = json.loads((inputs.metrics / "e7.json").read_text())["e7"]
    # Every precision the stage recorded, once each: on a CPU with native bf16 the features ran
    # bf16 and the heads fp32 ("bf16, fp32"); without it, fp32 alone.
    recorded = {metrics[part]["precision"] for part in ("features", "linear_pretrained", "linear_random", "finetuned") if "precision" in metrics.get(part, {})}
    assert recorded and e7["precision"] == ", ".join(sorted(recorded))


def test_the_page_shows_the_devices_the_metrics_record(inputs, tmp_path):
    path = inputs.metrics / "e7.json"
    tree = json.loads(path.read_text())
    for model in ("linear_pretrained", "linear_random", "finetuned"):
        tree["e7"][model]["device"] = "cuda"
    tree["e7"]["features"]["device"] = "cpu"
    path.write_text(json.dumps(tree))
    e8 = inputs.metrics / "e8.json"
    e8_tree = json.loads(e8.read_text())
    for value in e8_tree["e8"].values():
        if isinstance(value, dict):
            value.pop("device", None)
    e8.write_text(json.dumps(e8_tree))
    page = page_of(inputs, tmp_path)
    ran = {s.experiment.key: dict(s.what_ran) for s in page.sections}
    assert ran["e7"]["device"] == "cpu, cuda", "the features on the CPU, the heads and the fine-tuning on the GPU"
    assert ran["e8"]["device"] == "not recorded"
    assert "; device cpu, cuda. " in render_markdown(page) and "; device cpu, cuda. " in render_html(page), "every device recorded, once"


def test_every_key_param_the_page_shows_exists():
    p = params()
    for exp in EXPERIMENTS:
        for key in exp.key_params:
            node = p[exp.key]
            for part in key.split("."):
                assert part in node, f"{exp.key}.{key} is not a param: update report.EXPERIMENTS"
                node = node[part]


def test_seeds_are_shown_when_aggregated(inputs, tmp_path):
    without = render_html(page_of(inputs, tmp_path))
    assert "No seed sweep yet" in without and Parsed(without).claim_rows
    assert "1 seed (seed 0)" in without
    agg = aggregate(json.loads((ROOT / "tests" / "data" / "exp_show.json").read_text()))
    io.write_json(inputs.seeds, agg)
    page = page_of(inputs, tmp_path)
    text = render_html(page)
    assert "No seed sweep yet" not in text and "1 seed (seed 0)" not in text
    for c in agg["claims"]:
        if c["of"]:
            assert f"holds in {c['holds']} of {c['of']} seeds" in text
    flips = [c for c in agg["claims"] if 0 < c["holds"] < c["of"]]
    assert flips and "flips, not a finding" in text
    assert "another commit" in text, "the fixture's sweep is of another commit than GIT"


def test_a_sweep_of_the_other_profile_checks_no_claim_of_this_page(inputs, tmp_path):
    agg = aggregate(json.loads((ROOT / "tests" / "data" / "exp_show.json").read_text()))
    other = "full" if agg["profile"] == "embedded" else "embedded"
    io.write_json(inputs.seeds, agg)
    page = page_of(inputs, tmp_path)
    page.profile = other
    for text in (render_html(page), render_markdown(page)):
        assert "holds in" not in text and f"the sweep is of the {agg['profile']} profile" in text
        assert f"This page is of the {other} profile: the sweep does not check its claims." in text


def test_data_note_prefers_the_reports_data_paragraph():
    assert data_note("# T\n\nIntro.\n\nData: 10 images (embedded profile).\n\n| a |\n|---|\n") == "Data: 10 images (embedded profile)."
    assert data_note("# T\n\nMLP autoencoders.\n\n## mnist (embedded profile: train 4,000)\n\ntext") == "mnist (embedded profile: train 4,000)"
    assert data_note("# T\n\nNothing here.") is None


def test_markdown_html_nests_headings_and_escapes_html():
    out = markdown_html("# Title\n\n## Part\n\n<script>x</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<h3>Title</h3>" in out and "<h4>Part</h4>" in out and "<table>" in out
    assert "<script>" not in out


def test_git_state_reads_the_commit_and_a_changed_params_file(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=tmp_path, check=True, capture_output=True)

    assert git_state(tmp_path) == GitState(None)
    git("init", "-q")
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    git("add", "params.yaml")
    git("commit", "-qm", "params")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_state(tmp_path) == GitState(head, False)
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    assert git_state(tmp_path) == GitState(head, True)


# --------------------------------------------------------------------------- the stage


def test_the_stage_writes_both_pages_and_its_timing(tmp_path):
    """stages/report.py in a folder laid out like the repository (outputs copied, plots linked)."""
    for folder in ("metrics", "timings", "reports", "stages", "seeds"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    for name in ("index.html", "index.md"):
        (tmp_path / "reports" / name).unlink(missing_ok=True)
    (tmp_path / "plots").symlink_to(ROOT / "plots")
    shutil.copy(ROOT / "params.yaml", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "stages/report.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    html_text = (tmp_path / "reports" / "index.html").read_text()
    assert html_text.startswith("<!DOCTYPE html>") and "git commit unknown" in html_text, "not a git checkout: says so"
    assert (tmp_path / "reports" / "index.md").read_text().startswith("# reprodl")
    assert "stage_seconds" in json.loads((tmp_path / "timings" / "report.json").read_text())
    (tmp_path / "params.yaml").write_text((tmp_path / "params.yaml").read_text().replace("seed: 0", "seed: -1"))
    bad = subprocess.run([sys.executable, "stages/report.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("params.yaml: seed must be >= 0"), bad.stderr


def test_the_report_stage_depends_on_every_experiment_output_it_reads():
    """Each output of an experiment stage that the page reads is a dep of the report stage, so
    `dvc repro` rebuilds the page after any experiment; a new experiment stage fails here."""
    deps = set(STAGES["report"]["deps"])
    outs = {name: {next(iter(o)) if isinstance(o, dict) else o for o in st.get("outs", []) + st.get("metrics", [])} for name, st in STAGES.items()}
    wanted = set()
    for exp in EXPERIMENTS:
        for stage in exp.stages:
            if stage in STAGES:
                wanted |= {p for p in outs[stage] if p == f"metrics/{exp.key}.json" or p == f"reports/{exp.key}.md"
                           or p == f"timings/{stage}.json" or p in {f"plots/{f}" for f in exp.plots}}
    assert wanted <= deps, f"add to the report stage's deps: {sorted(wanted - deps)}"
    assert {f"metrics/{e.key}.json" for e in EXPERIMENTS if e.stages[-1] in STAGES} <= deps
    assert "seeds" in deps and (ROOT / "seeds").is_dir(), "the sweep's folder exists before any sweep (a dep must)"
    assert STAGES["report"]["params"] == [{"params.yaml": None}], "the page states every param"
    last = list(STAGES)[-1]
    assert last == "report", "the page is the last stage"


def test_metrics_files_of_a_foreach_stage_merge_under_one_key(tmp_path):
    """pretrain@<arch> writes metrics/pretrain_<arch>.json, each {"pretrain": {arch: ...}}: the page sees every arch."""
    from reprodl.report import load_metrics

    io.write_json(tmp_path / "pretrain_resnet18.json", {"pretrain": {"resnet18": {"val": {"accuracy": 0.8}}}})
    io.write_json(tmp_path / "pretrain_vit_micro_patch8.json", {"pretrain": {"vit_micro_patch8": {"val": {"accuracy": 0.6}}}})
    io.write_json(tmp_path / "e1.json", {"e1": {"logreg": {"test": {"accuracy": 0.9}}}})
    merged = load_metrics(tmp_path)
    assert set(merged["pretrain"]) == {"resnet18", "vit_micro_patch8"} and merged["e1"]["logreg"]["test"]["accuracy"] == 0.9
