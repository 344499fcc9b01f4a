"""The course's claims as pure functions of the metrics trees (reprodl.claims).

Each test builds metrics in the shape the stages write, sets the numbers a claim compares, and
checks the verdict both ways; the expected orders come from reprodl.references, as the claims'.
"""

from __future__ import annotations

import copy
import json

import pytest

from configs import ROOT
from reprodl import claims, references
from reprodl.claims import FAILS, HOLDS, NOT_RUN, evaluate


def committed_metrics() -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for path in sorted((ROOT / "metrics").glob("*.json")):
        merged.update(json.loads(path.read_text()))
    return merged


def verdict(metrics: dict, claim_id: str) -> claims.Verdict:
    return next(v for v in evaluate(metrics) if v.claim == claim_id)


def ordered(names: list[str], high: float = 0.9, step: float = 0.05) -> dict[str, float]:
    """names[0] best, each next one `step` lower."""
    return {name: high - i * step for i, name in enumerate(names)}


def e1_metrics(acc: dict[str, float]) -> dict:
    return {"e1": {m: {"val": {"accuracy": a}, "test": {"accuracy": a}, "precision": "fp32"} for m, a in acc.items()}}


def e9_metrics(subsets: dict[str, tuple[float, float]]) -> dict:
    """The shape E9's stage writes: subsets -> model -> accuracy, top3_accuracy; (vit, baseline)."""
    return {"e9": {"dataset": "dogs", "profile": "embedded", "subsets": {
        s: {"baseline": {"accuracy": m, "top3_accuracy": m + 0.1}, "vit": {"accuracy": v, "top3_accuracy": v + 0.05}} for s, (v, m) in subsets.items()}}}


def test_every_claim_of_an_experiment_that_ran_is_decided_on_the_committed_metrics():
    """A renamed metrics key would leave a claim silently "not run": the committed outputs must decide every claim they cover."""
    metrics = committed_metrics()
    for claim, v in zip(claims.CLAIMS, evaluate(metrics)):
        if claim.experiment in metrics:
            assert v.status in (HOLDS, FAILS), f"{claim.id}: {v.evidence}"
            assert v.values and all(key.startswith(claim.experiment + ".") for key in v.values)
        else:
            assert v.status == NOT_RUN


def test_the_expected_orders_are_the_references():
    assert claims.E1_ORDER == sorted(claims.E1_MODELS, key=lambda m: -references.E1[m]["full"])
    assert claims.E8_ORDER == sorted(references.E8_VAL, key=lambda v: -references.E8_VAL[v])


def test_e1_order_holds_only_in_the_reference_order():
    assert verdict(e1_metrics(ordered(claims.E1_ORDER)), "e1_order").status == HOLDS
    swapped = ordered(claims.E1_ORDER)
    swapped[claims.E1_ORDER[0]], swapped[claims.E1_ORDER[1]] = swapped[claims.E1_ORDER[1]], swapped[claims.E1_ORDER[0]]
    v = verdict(e1_metrics(swapped), "e1_order")
    assert v.status == FAILS and "<" in v.evidence
    tie = {m: 0.9 for m in claims.E1_ORDER}
    assert verdict(e1_metrics(tie), "e1_order").status == FAILS, "a tie is not an order"


def test_a_missing_number_is_not_run_and_shows_none():
    acc = ordered(claims.E1_ORDER)
    del acc["mlp"]
    v = verdict(e1_metrics(acc), "e1_order")
    assert v.status == NOT_RUN and v.values == {}
    assert v.evidence == "not run: e1.mlp.test.accuracy is not in metrics/e1.json", "no number, the key it lacks"


@pytest.mark.parametrize("flipped", list(references.E2["correlation"]))
def test_e2_every_sign_must_match_the_reference(flipped):
    correlation = {p: 0.3 if r > 0 else -0.3 for p, r in references.E2["correlation"].items()}
    assert verdict({"e2": {"correlation": correlation}}, "e2_signs").status == HOLDS
    correlation[flipped] = -correlation[flipped]
    v = verdict({"e2": {"correlation": correlation}}, "e2_signs")
    assert v.status == FAILS and f"{len(correlation) - 1} of {len(correlation)}" in v.evidence


def e4_metrics(hits: dict[str, float]) -> dict:
    return {"e4": {name: {"test": {"neighboring_hit": h, "neighboring_hit_pca": h / 2}} for name, h in hits.items()}}


def test_e4_rises_per_model_from_the_pixels():
    rising = {"pixels": 0.7, "mlp_hidden": 0.8, "mlp_logits": 0.9, "convnet_hidden": 0.75, "convnet_logits": 0.95}
    assert verdict(e4_metrics(rising), "e4_rising").status == HOLDS, "each model is its own chain"
    below_pixels = {**rising, "convnet_hidden": 0.6}
    assert verdict(e4_metrics(below_pixels), "e4_rising").status == FAILS
    logits_drop = {**rising, "mlp_logits": 0.79}
    assert verdict(e4_metrics(logits_drop), "e4_rising").status == FAILS
    assert verdict(e4_metrics({"pixels": 0.7}), "e4_rising").status == NOT_RUN


def e5_metrics(better: dict[str, bool]) -> dict:
    return {"e5": {d: {"bce_vs_mse": {"test": {"wilcoxon_p_bce_better": 0.03 if b else 0.2, "wilcoxon_p_two_sided": 0.06,
                                               "sizes_bce_better": 5 if b else 3, "sizes": 5, "bce_better": b}}} for d, b in better.items()}}


def test_e5_needs_the_wilcoxon_verdict_on_every_dataset():
    assert verdict(e5_metrics({"mnist": True}), "e5_bce").status == HOLDS
    assert verdict(e5_metrics({"mnist": False}), "e5_bce").status == FAILS
    v = verdict(e5_metrics({"mnist": True, "fashion_mnist": False}), "e5_bce")
    assert v.status == FAILS and "mnist" in v.evidence and "fashion_mnist" in v.evidence


def e7_metrics(pretrained: float, random: float, finetuned: float) -> dict:
    return {"e7": {m: {"test": {"map_voc07": v, "map_sklearn": v - 1}} for m, v in
                   (("linear_pretrained", pretrained), ("linear_random", random), ("finetuned", finetuned))}}


def test_e7_pretrained_beats_random_and_finetuning_beats_the_head():
    assert verdict(e7_metrics(30, 25, 31), "e7_pretrained").status == HOLDS
    assert verdict(e7_metrics(30, 25, 31), "e7_finetune").status == HOLDS
    assert verdict(e7_metrics(25, 30, 31), "e7_pretrained").status == FAILS
    assert verdict(e7_metrics(30, 25, 29), "e7_finetune").status == FAILS


def test_e8_ranks_the_variants_as_the_reference():
    acc = ordered(claims.E8_ORDER)
    e8 = {"e8": {v: {"val": {"accuracy": a}, "test": {"accuracy": a}} for v, a in acc.items()}}
    assert verdict(e8, "e8_order").status == HOLDS
    worst_first = copy.deepcopy(e8)
    worst_first["e8"][claims.E8_ORDER[-1]]["val"]["accuracy"] = 1.0
    assert verdict(worst_first, "e8_order").status == FAILS


def test_e9_vit_must_win_on_every_subset():
    assert verdict(e9_metrics({"13": (0.8, 0.7), "28": (0.75, 0.6)}), "e9_vit").status == HOLDS
    v = verdict(e9_metrics({"13": (0.8, 0.7), "28": (0.55, 0.6)}), "e9_vit")
    assert v.status == FAILS and "13 classes" in v.evidence and "28 classes" in v.evidence
    absent = verdict({}, "e9_vit")
    assert absent.status == NOT_RUN and absent.evidence == "not run: metrics/e9.json is absent"
    no_vit = e9_metrics({"13": (0.8, 0.7)})
    del no_vit["e9"]["subsets"]["13"]["vit"]
    assert verdict(no_vit, "e9_vit").status == NOT_RUN


def test_chain_writes_the_relation_that_holds():
    assert claims.chain([("a", 0.9), ("b", 0.95), ("c", 0.95)], ".2f") == "a 0.90 < b 0.95 = c 0.95"
