"""Validation of params.yaml sections, before any work starts.

A stage reads params.yaml, hands its sections to a `check_*` function and gets plain,
normalised values back, or one ParamError whose message names the key and what is allowed:

    params.yaml: e1.convnet.lr must be a number > 0, got -0.1
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from .engine import TrainConfig

from .datasets import DATASETS, PROFILES, SPLITS, DatasetError, check_available


class ParamError(ValueError):
    """A bad value in params.yaml; the message names the key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"params.yaml: {key} {message}")
        self.key = key


def get(section: Mapping, key: str, path: str, default: Any = ...) -> Any:
    """section[key], or a ParamError naming `path.key` when it is missing."""
    if not isinstance(section, Mapping):
        raise ParamError(path, f"must be a mapping, got {section!r}")
    if key not in section:
        if default is ...:
            raise ParamError(f"{path}.{key}", "is missing")
        return default
    return section[key]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamError(key, f"must be an integer >= 1, got {value!r}")
    return value


def positive_float(value: Any, key: str) -> float:
    if not _is_number(value) or value <= 0:
        raise ParamError(key, f"must be a number > 0, got {value!r}")
    return float(value)


def non_negative_float(value: Any, key: str, below: float | None = None) -> float:
    if not _is_number(value) or value < 0 or (below is not None and value >= below):
        allowed = f"in [0, {below})" if below is not None else ">= 0"
        raise ParamError(key, f"must be a number {allowed}, got {value!r}")
    return float(value)


def one_of(value: Any, key: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ParamError(key, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def non_empty_list(value: Any, key: str) -> list:
    if not isinstance(value, list) or not value:
        raise ParamError(key, f"must be a non-empty list, got {value!r}")
    return value


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ParamError(key, f"must be true or false, got {value!r}")
    return value


# --------------------------------------------------------------------------- shared sections


def check_seed(params: Mapping) -> int:
    seed = get(params, "seed", "params")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParamError("seed", f"must be an integer >= 0, got {seed!r}")
    return seed


def check_split(split: Any, key: str = "data.split") -> tuple[float, float, float]:
    if not isinstance(split, Mapping) or set(split) != set(SPLITS):
        raise ParamError(key, f"must map exactly {', '.join(SPLITS)} to fractions, got {split!r}")
    fractions = tuple(non_negative_float(split[s], f"{key}.{s}", below=1.0 + 1e-9) for s in SPLITS)
    if fractions[0] <= 0:
        raise ParamError(f"{key}.train", "must be > 0")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ParamError(key, f"fractions must sum to 1, got {' + '.join(f'{f:g}' for f in fractions)} = {sum(fractions):g}")
    return fractions  # type: ignore[return-value]


def check_data(data: Mapping) -> dict:
    """The `data` section: profile, datasets, split, sources. Returns it normalised."""
    profile = one_of(get(data, "profile", "data"), "data.profile", PROFILES)
    names = non_empty_list(get(data, "datasets", "data"), "data.datasets")
    for i, name in enumerate(names):
        one_of(name, f"data.datasets[{i}]", list(DATASETS))
        try:
            check_available(name, profile)
        except DatasetError as err:
            raise ParamError(f"data.datasets[{i}]", f"({name}): {err}") from None
    if len(set(names)) != len(names):
        raise ParamError("data.datasets", f"lists a dataset twice: {names}")
    fractions = check_split(get(data, "split", "data"))
    scenes = dict(get(data, "scenes", "data"))
    for key in ("n_scenes", "canvas", "min_digits", "max_digits", "min_size", "max_size", "difficult_below"):
        positive_int(get(scenes, key, "data.scenes"), f"data.scenes.{key}")
    if scenes["min_digits"] > scenes["max_digits"]:
        raise ParamError("data.scenes.min_digits", f"must be <= data.scenes.max_digits ({scenes['max_digits']})")
    if not scenes["min_size"] <= scenes["max_size"] <= scenes["canvas"]:
        raise ParamError("data.scenes.max_size", "must lie between data.scenes.min_size and data.scenes.canvas")
    max_images = get(data, "max_images", "data", None)
    if max_images is not None:
        positive_int(max_images, "data.max_images")
    sources = get(data, "sources", "data")
    if profile == "full":
        for name in names:
            entry = get(sources, name, "data.sources")
            mirrors = non_empty_list(get(entry, "mirrors", f"data.sources.{name}"), f"data.sources.{name}.mirrors")
            for j, url in enumerate(mirrors):
                if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                    raise ParamError(f"data.sources.{name}.mirrors[{j}]", f"must be an http(s) URL, got {url!r}")
            for key, spec in get(entry, "files", f"data.sources.{name}").items():
                md5 = get(spec, "md5", f"data.sources.{name}.files.{key}")
                get(spec, "name", f"data.sources.{name}.files.{key}")
                if not (isinstance(md5, str) and len(md5) == 32 and all(c in "0123456789abcdef" for c in md5.lower())):
                    raise ParamError(f"data.sources.{name}.files.{key}.md5", f"must be 32 hex digits, got {md5!r}")
    return {
        "profile": profile,
        "datasets": list(names),
        "fractions": fractions,
        "max_images": max_images,
        "official_test": boolean(get(data, "official_test", "data"), "data.official_test"),
        "image_size": positive_int(get(data, "image_size", "data"), "data.image_size"),
        "colour_size": positive_int(get(data, "colour_size", "data"), "data.colour_size"),
        "scenes": scenes,
        "sources": sources,
    }


def check_dataset_name(value: Any, key: str, data: Mapping, task: str | None = None) -> str:
    """A dataset an experiment reads: known, prepared by this pipeline (in data.datasets)."""
    name = one_of(value, key, list(DATASETS))
    if name not in data["datasets"]:
        raise ParamError(key, f"is {name!r}, which is not prepared: add it to data.datasets ({', '.join(data['datasets'])})")
    if task is not None and DATASETS[name].task != task:
        raise ParamError(key, f"must be a {task} dataset, got {name!r} ({DATASETS[name].task})")
    return name


def check_train(section: Mapping, path: str, seed: int, loss: str = "cross_entropy") -> TrainConfig:
    """A training block (epochs, batch_size, lr, optimizer...) -> the engine's TrainConfig."""
    from .engine import LOSSES, OPTIMIZERS, SCHEDULES, Augment, TrainConfig  # torch: only stages that train pay its import
    from .precision import PRECISIONS

    augment = get(section, "augment", path, {}) or {}
    max_batches = get(section, "max_batches", path, None)
    return TrainConfig(
        epochs=positive_int(get(section, "epochs", path), f"{path}.epochs"),
        batch_size=positive_int(get(section, "batch_size", path), f"{path}.batch_size"),
        lr=positive_float(get(section, "lr", path), f"{path}.lr"),
        optimizer=one_of(get(section, "optimizer", path, "sgd"), f"{path}.optimizer", OPTIMIZERS),
        momentum=non_negative_float(get(section, "momentum", path, 0.0), f"{path}.momentum", below=1.0),
        weight_decay=non_negative_float(get(section, "weight_decay", path, 0.0), f"{path}.weight_decay"),
        schedule=one_of(get(section, "schedule", path, "constant"), f"{path}.schedule", SCHEDULES),
        loss=one_of(loss, f"{path}.loss", LOSSES),
        augment=Augment(
            shift=non_negative_float(get(augment, "shift", f"{path}.augment", 0.0), f"{path}.augment.shift"),
            rotate=non_negative_float(get(augment, "rotate", f"{path}.augment", 0.0), f"{path}.augment.rotate", below=180.0),
            scale=non_negative_float(get(augment, "scale", f"{path}.augment", 0.0), f"{path}.augment.scale", below=1.0),
        ),
        seed=seed,
        max_batches=None if max_batches is None else positive_int(max_batches, f"{path}.max_batches"),
        precision=one_of(get(section, "precision", path, "fp32"), f"{path}.precision", PRECISIONS),
    )
