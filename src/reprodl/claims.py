"""The course reports' qualitative findings, checked against this pipeline's metrics.

Every claim is a pure function of the metrics trees (what metrics/<stage>.json holds under its
top-level key, e.g. metrics["e1"]["convnet"]["test"]["accuracy"]), so the study page checks one
run and `reprodl seeds` checks every seed of a sweep with the same code:

    verdicts = evaluate({"e1": {...}, "e2": {...}})     # one Verdict per claim, in CLAIMS order
    verdicts[0].status                                  # "holds", "does not hold" or "not run"

The order a claim expects (ConvNet > MLP > logistic regression, the signs of the grid's
correlations, the ranking of E8's variants) is read from the catalogue's numbers
(reprodl.references), not typed a second time. A claim whose experiment has not run, or whose
metrics lack a number it needs, is "not run" and gives no number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import references

HOLDS, FAILS, NOT_RUN = "holds", "does not hold", "not run"
# Display names of the models and variants the claims name.
NAMES = {
    "logreg": "logistic regression",
    "mlp": "MLP",
    "convnet": "ConvNet",
    "scratch": "scratch",
    "pretrained_all": "pretrained (all layers trained)",
    "pretrained_layer4": "pretrained (layer4 + fc trained)",
    "vit": "ViT",
    "baseline": "frozen MobileNetV2",
}


class Missing(LookupError):
    """A number the claim needs is not in the metrics (its experiment, or that part of it, did not run)."""


@dataclass(frozen=True)
class Verdict:
    claim: str  # Claim.id
    status: str  # HOLDS, FAILS or NOT_RUN
    evidence: str  # the numbers behind the verdict (or why it did not run)
    values: dict[str, float] = field(default_factory=dict)  # dotted metric key -> value used


@dataclass(frozen=True)
class Claim:
    id: str
    experiment: str  # the metrics file (and top-level key) it reads
    statement: str
    reference: str  # what the course report (or the literature) found
    check: Callable[[dict], tuple[bool, str, dict[str, float]]]  # metrics[experiment] -> (holds, evidence, values)


def get(tree: Any, dotted: str) -> Any:
    """tree["a"]["b"] for "a.b"; Missing when any part is absent."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise Missing(dotted)
        node = node[part]
    return node


def _number(tree: dict, prefix: str, dotted: str, values: dict[str, float]) -> float:
    value = get(tree, dotted)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Missing(dotted)
    values[f"{prefix}.{dotted}"] = float(value)
    return float(value)


def chain(items: list[tuple[str, float]], fmt: str = ".4f") -> str:
    """"a 0.98 > b 0.97 < c 0.99": each pair joined by the relation that actually holds."""
    out = f"{items[0][0]} {items[0][1]:{fmt}}"
    for (_, a), (name, b) in zip(items, items[1:]):
        out += f" {'>' if a > b else '<' if a < b else '='} {name} {b:{fmt}}"
    return out


def ranked(reference: dict[str, float]) -> list[str]:
    """Names by their reference number, best first."""
    return sorted(reference, key=reference.get, reverse=True)


# --------------------------------------------------------------------------- the claims

E1_MODELS = ("logreg", "mlp", "convnet")
E1_ORDER = ranked({m: references.E1[m]["full"] for m in E1_MODELS})


def _e1_order(e1: dict) -> tuple[bool, str, dict]:
    values: dict[str, float] = {}
    acc = [_number(e1, "e1", f"{m}.test.accuracy", values) for m in E1_ORDER]
    holds = all(a > b for a, b in zip(acc, acc[1:]))
    return holds, chain([(NAMES[m], a) for m, a in zip(E1_ORDER, acc)]) + " (test accuracy)", values


E2_PARAMS = tuple(references.E2["correlation"])


def _e2_signs(e2: dict) -> tuple[bool, str, dict]:
    values: dict[str, float] = {}
    ours = {p: _number(e2, "e2", f"correlation.{p}", values) for p in E2_PARAMS}
    agree = [p for p in E2_PARAMS if ours[p] * references.E2["correlation"][p] > 0]
    evidence = ", ".join(f"{p} {ours[p]:+.2f}" for p in E2_PARAMS) + f" ({len(agree)} of {len(E2_PARAMS)} signs as the reference)"
    return len(agree) == len(E2_PARAMS), evidence, values


def _e4_rising(e4: dict) -> tuple[bool, str, dict]:
    """For each model, t-SNE neighboring_hit rises from the pixels through its hooked layers, in
    the order E4 mapped them (its metrics keep params' order: <model>_<layer>)."""
    values: dict[str, float] = {}
    pixels = _number(e4, "e4", "pixels.test.neighboring_hit", values)
    chains: dict[str, list[tuple[str, float]]] = {}
    for name in e4:
        if name == "pixels":
            continue
        model = name.rsplit("_", 1)[0]
        chains.setdefault(model, [("pixels", pixels)]).append((name, _number(e4, "e4", f"{name}.test.neighboring_hit", values)))
    if not chains:
        raise Missing("<model>_<layer>")
    rising = {m: all(a[1] < b[1] for a, b in zip(c, c[1:])) for m, c in chains.items()}
    evidence = "; ".join(chain(c, ".3f") for c in chains.values())
    return all(rising.values()), evidence + " (t-SNE neighboring_hit, test)", values


def _e5_bce(e5: dict) -> tuple[bool, str, dict]:
    values: dict[str, float] = {}
    parts, holds = [], True
    for dataset in e5:
        test = f"{dataset}.bce_vs_mse.test"
        p = _number(e5, "e5", f"{test}.wilcoxon_p_bce_better", values)
        holds &= bool(get(e5, f"{test}.bce_better"))  # e5's verdict: one-sided p below its alpha
        parts.append(f"{dataset}: BCE lower at {get(e5, f'{test}.sizes_bce_better')} of {get(e5, f'{test}.sizes')} sizes, one-sided Wilcoxon p = {p:.4g}")
    if not parts:
        raise Missing("<dataset>")
    return holds, "; ".join(parts) + " (the claim needs p < 0.05)", values


def _e7_pretrained(e7: dict) -> tuple[bool, str, dict]:
    values: dict[str, float] = {}
    pre = _number(e7, "e7", "linear_pretrained.test.map_voc07", values)
    rnd = _number(e7, "e7", "linear_random.test.map_voc07", values)
    return pre > rnd, chain([("pretrained features", pre), ("random features", rnd)], ".2f") + " (linear head, test mAP VOC07, %)", values


def _e7_finetune(e7: dict) -> tuple[bool, str, dict]:
    values: dict[str, float] = {}
    fine = _number(e7, "e7", "finetuned.test.map_voc07", values)
    head = _number(e7, "e7", "linear_pretrained.test.map_voc07", values)
    return fine > head, chain([("fine-tuned", fine), ("linear head", head)], ".2f") + " (test mAP VOC07, %)", values


E8_ORDER = ranked(references.E8_VAL)


def _e8_order(e8: dict) -> tuple[bool, str, dict]:
    values: dict[str, float] = {}
    acc = [_number(e8, "e8", f"{v}.val.accuracy", values) for v in E8_ORDER]
    holds = all(a > b for a, b in zip(acc, acc[1:]))
    return holds, chain([(NAMES[v], a) for v, a in zip(E8_ORDER, acc)]) + " (val accuracy)", values


def _e9_vit(e9: dict) -> tuple[bool, str, dict]:
    values: dict[str, float] = {}
    subsets = get(e9, "subsets")
    if not subsets:
        raise Missing("subsets")
    parts, holds = [], True
    for subset in subsets:
        vit = _number(e9, "e9", f"subsets.{subset}.vit.accuracy", values)
        mobile = _number(e9, "e9", f"subsets.{subset}.baseline.accuracy", values)
        holds &= vit > mobile
        parts.append(f"{subset} classes: " + chain([("ViT", vit), ("MobileNetV2", mobile)]))
    return holds, "; ".join(parts) + " (test accuracy)", values


def _e1_statement() -> str:
    return " > ".join(NAMES[m] for m in E1_ORDER) + " (test accuracy)"


def _signs() -> str:
    return ", ".join(f"{p} {'+' if r > 0 else '-'}" for p, r in references.E2["correlation"].items())


CLAIMS: tuple[Claim, ...] = (
    Claim("e1_order", "e1", _e1_statement(),
          "full MNIST: " + ", ".join(f"{NAMES[m]} {references.E1[m]['full']:.4f}" for m in E1_ORDER), _e1_order),
    Claim("e2_signs", "e2", f"The grid's correlations with val accuracy have the reference's signs: {_signs()}",
          ", ".join(f"{p} {r:+.2f}" for p, r in references.E2["correlation"].items()), _e2_signs),
    Claim("e4_rising", "e4", "Neighboring hit rises through the layers (pixels < hidden < logits)",
          "qualitative: rises from the input to the deep layers", _e4_rising),
    Claim("e5_bce", "e5", "BCE beats MSE for autoencoders (lower test MSE, one-sided Wilcoxon p < 0.05)",
          f"BCE lower at every size, p = {references.E5_P}", _e5_bce),
    Claim("e7_pretrained", "e7", "Pretrained features beat random ones (linear head)",
          "the catalogue's target for E7 (it gives no number for random features)", _e7_pretrained),
    Claim("e7_finetune", "e7", "Fine-tuning beats the linear head",
          f"fine-tuned {references.E7['finetuned']['test']:.2f} vs linear head {references.E7['linear_pretrained']['test']:.2f} (test mAP %)", _e7_finetune),
    Claim("e8_order", "e8", "Partial freezing vs full fine-tuning vs scratch: " + " > ".join(NAMES[v] for v in E8_ORDER) + " (val accuracy)",
          ", ".join(f"{NAMES[v]} {references.E8_VAL[v]:.4f}" for v in E8_ORDER), _e8_order),
    Claim("e9_vit", "e9", "ViT beats frozen MobileNetV2 (test accuracy, every subset)",
          f"ViT-B/16 about {references.E9['vit']:.3f}, frozen MobileNetV2 about {references.E9['baseline']:.2f} (all 120 breeds)", _e9_vit),
)
BY_ID = {claim.id: claim for claim in CLAIMS}


def evaluate(metrics: dict[str, dict]) -> list[Verdict]:
    """One Verdict per claim. `metrics`: top-level key -> tree, e.g. {"e1": {"logreg": ...}}."""
    verdicts = []
    for claim in CLAIMS:
        tree = metrics.get(claim.experiment)
        if tree is None:
            verdicts.append(Verdict(claim.id, NOT_RUN, f"not run: metrics/{claim.experiment}.json is absent"))
            continue
        try:
            holds, evidence, values = claim.check(tree)
        except Missing as missing:
            verdicts.append(Verdict(claim.id, NOT_RUN, f"not run: {claim.experiment}.{missing.args[0]} is not in metrics/{claim.experiment}.json"))
            continue
        verdicts.append(Verdict(claim.id, HOLDS if holds else FAILS, evidence, values))
    return verdicts
