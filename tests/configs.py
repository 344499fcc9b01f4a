"""Compose the real params.yaml with overrides, as `dvc exp run -S key=value` would, then validate.

    params = compose({"e1.grid_images": 40, "e1.logreg.epochs": 1})   # -> config.Params
    raw = raw_params({"e1.convnet.momentun": 0.9})                     # -> the dict, unvalidated

A value DELETE removes the key. Tests shrink the real config this way, so a renamed or removed
param breaks them instead of being silently ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from reprodl import config

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DELETE = object()
# The full profile: every dataset a full download, every experiment on one (E5's fashion_mnist aside).
FULL_PROFILE = {
    "data.profile": "full", "data.datasets": ["mnist", "usps", "voc2007", "stanford_dogs"],
    "e7.dataset": "voc2007", "pretrain.dataset": "stanford_dogs", "e6.usps_mlp.dataset": "usps", "e6.usps_conv.dataset": "usps",
    "e9.dataset": "stanford_dogs",
}


def raw_params(overrides: dict[str, Any] | None = None, base: dict | None = None) -> dict:
    raw = copy.deepcopy(PARAMS if base is None else base)
    for dotted, value in (overrides or {}).items():
        *parents, last = dotted.split(".")
        node = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return raw


def compose(overrides: dict[str, Any] | None = None, base: dict | None = None) -> config.Params:
    """The validated Params (config.ConfigError when an override is bad)."""
    return config.validate(raw_params(overrides, base))


def errors(overrides: dict[str, Any], base: dict | None = None) -> list[str]:
    """The error lines the overrides cause (empty when they are valid)."""
    try:
        compose(overrides, base)
    except config.ConfigError as err:
        return err.lines
    return []
