"""The typed config: one pydantic model per params.yaml section, its fields named and nested
exactly as the keys of params.yaml. Unknown keys are refused, bounds and allowed values sit
on the fields, and a bad file gives one line per bad input naming the dotted key:

    params.yaml: e1.convnet.momentun is not a known key (did you mean momentum?)
    params.yaml: e1.convnet.lr must be > 0, got -0.1

    params = load_params("params.yaml")    # -> Params, or ConfigError listing every bad key
    params.e1.convnet.lr                   # 0.05

This module does not import torch (validating every section takes well under a second);
the allowed optimisers, schedules, precisions and devices live here and the engine imports them.
sources.yaml (the full profile's mirrors and md5s) has its own model, Sources. Model specs, tensors and the engine's TrainConfig are built by the experiments from
these objects. Checks that need files (a layer of a saved model, the test split's size) are
made by the experiment before it starts work, with the same kind of error (ParamError).
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta")
SCHEDULES = ("constant", "onecycle", "cosine")
PRECISIONS = ("fp32", "bf16", "auto")
COMPILE_CHOICES = ("auto", "always", "never")  # torch.compile for a feature extraction (reprodl.hooks.use_compile)
DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when torch.cuda.is_available(), else the CPU (reprodl.engine.resolve_device)
PROFILES = ("embedded", "full")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
ARCHS = ("resnet50", "resnet18")  # torchvision architectures of the backbone loader
# timm architectures of the backbone loader (E9); reprodl.backbones.TIMM_SPECS says what each is.
TIMM_ARCHS = ("vit_base_patch16_224.augreg_in21k", "mobilenetv2_100", "mobilenetv2_050", "vit_micro_patch8")
HUB, RANDOM = "imagenet", "none"  # the two weights values that are not a file path


class ParamError(ValueError):
    """One bad value in params.yaml; the message names the dotted key."""

    def __init__(self, key: str, message: str, file: str = "params.yaml"):
        super().__init__(f"{file}: {key} {message}")
        self.key = key


class ConfigError(ValueError):
    """Every bad input of a params file at once, one line each (ParamError lines)."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


class KeyedError(ValueError):
    """Raised by a validator to blame `key`, dotted and relative to the model it runs in (a
    validator of the whole file, Params, names keys from the top: `e1.dataset`)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key, self.message = key, message


# --------------------------------------------------------------------------- field types


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _distinct(values: list) -> list:
    if len(set(map(str, values))) != len(values):
        raise ValueError(f"lists a value twice: {values}")
    return values


Count = Annotated[int, Field(ge=1)]  # an integer >= 1
Positive = Annotated[float, Field(gt=0), AfterValidator(_finite)]
NonNegative = Annotated[float, Field(ge=0), AfterValidator(_finite)]
Fraction = Annotated[float, Field(gt=0, lt=1)]  # strictly between 0 and 1
Distinct = AfterValidator(_distinct)


class Section(BaseModel):
    # strict: YAML's 1 is not a bool, "0.1" is not a number; forbid: a misspelled key is an error.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------- training blocks


class Augment(Section):
    """Random affine jitter per image (engine.random_affine)."""

    shift: NonNegative = 0.0  # max translation, pixels
    rotate: Annotated[float, Field(ge=0, lt=180)] = 0.0  # max rotation, degrees
    scale: Annotated[float, Field(ge=0, lt=1)] = 0.0  # max relative zoom, +- fraction


class TrainBase(Section):
    """What every training block shares, the learning rate aside (see Train)."""

    epochs: Count
    batch_size: Count  # images per step
    optimizer: Literal[OPTIMIZERS] = "sgd"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0  # sgd only
    weight_decay: NonNegative = 0.0
    schedule: Literal[SCHEDULES] = "constant"  # onecycle: lr is the peak
    augment: Augment = Augment()
    precision: Literal[PRECISIONS] = "fp32"
    max_batches: Count | None = None  # cap batches per epoch (tests shrink runs with it)

    @model_validator(mode="after")
    def _no_dead_momentum(self):
        # Only SGD has a momentum argument; Adam-like optimisers have betas, Adadelta rho.
        if "momentum" in self.model_fields_set and self.optimizer != "sgd":
            raise KeyedError("momentum", f"applies to optimizer sgd only, not {self.optimizer}: remove the key")
        return self


class Train(TrainBase):
    lr: Positive  # learning rate (the peak for schedule onecycle)


# --------------------------------------------------------------------------- data


class Scenes(Section):
    """digit_scenes: MNIST digits pasted on a canvas, multi-label (the VOC2007 stand-in)."""

    n_scenes: Count  # in all, shared out by the split fractions
    canvas: Count  # pixels
    min_digits: Count
    max_digits: Count
    min_size: Count  # pixels, side of a pasted digit
    max_size: Count
    difficult_below: Count  # pixels: a smaller digit is "difficult"

    @model_validator(mode="after")
    def _ranges(self):
        if self.min_digits > self.max_digits:
            raise KeyedError("min_digits", f"must be <= max_digits ({self.max_digits}), got {self.min_digits}")
        if not self.min_size <= self.max_size <= self.canvas:
            raise KeyedError("max_size", f"must lie between min_size ({self.min_size}) and canvas ({self.canvas}), got {self.max_size}")
        return self


class Split(Section):
    train: Annotated[float, Field(gt=0, le=1)]
    val: Annotated[float, Field(ge=0, le=1)]
    test: Annotated[float, Field(ge=0, le=1)]

    @model_validator(mode="after")
    def _sums_to_one(self):
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {self.train:g} + {self.val:g} + {self.test:g} = {total:g}")
        return self

    @property
    def fractions(self) -> tuple[float, float, float]:
        return (self.train, self.val, self.test)


class Pairs(Section):
    """digit_pairs: two-digit numbers of MNIST digits (the Stanford Dogs stand-in of E9)."""

    classes: Annotated[int, Field(ge=2, le=100)]  # 00, 01, ...: at most 100 two-digit numbers
    per_class: Count  # images per class in all, shared out by fine_grained_split


class Data(Section):
    profile: Literal[PROFILES]
    datasets: Annotated[list[str], Field(min_length=1), Distinct]
    split: Split
    fine_grained_split: Split  # E9's sets (stanford_dogs, digit_pairs)
    official_test: bool  # full profile: keep the official test split where there is one
    max_images: Count | None  # a seeded, stratified subsample of every dataset (None: all)
    image_size: Count  # pixels: full-profile VOC2007 and Stanford Dogs images
    colour_size: Count  # pixels: colour_digits, digit_pairs
    scenes: Scenes
    pairs: Pairs

    @model_validator(mode="after")
    def _datasets_exist_in_profile(self):
        from .datasets import DATASETS, profile_error  # no torch, no numpy at import

        for i, name in enumerate(self.datasets):
            if name not in DATASETS:
                raise KeyedError(f"datasets[{i}]", f"must be one of {', '.join(DATASETS)}; got {name!r}")
            problem = profile_error(name, self.profile)
            if problem:
                raise KeyedError(f"datasets[{i}]", f"({name}): {problem}")
        return self


# --------------------------------------------------------------------------- experiments


class Logreg(Train):
    pass


class MLP(Train):
    hidden: Count  # units
    activation: Literal[ACTIVATIONS]


class MLPSigmoid(TrainBase):
    hidden: Count
    lrs: Annotated[list[Positive], Field(min_length=1), Distinct]  # one model per learning rate


class ConvNet(Train):
    channels: Annotated[list[Count], Field(min_length=2, max_length=2)]  # filters of the two conv blocks
    kernel: Count  # pixels
    hidden: Count
    activation: Literal[ACTIVATIONS]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0


class Perceptron(Section):
    lr: Positive
    batch_size: Count
    epochs: Count
    test_fraction: Fraction  # re-split of all images


E1_MODELS = ("logreg", "mlp", "mlp_sigmoid", "convnet", "perceptron")


class E1(Section):
    dataset: str
    models: Annotated[list[Literal[E1_MODELS]], Field(min_length=1), Distinct]
    grid_images: Count
    logreg: Logreg
    mlp: MLP
    mlp_sigmoid: MLPSigmoid
    convnet: ConvNet
    perceptron: Perceptron


class E2Grid(Section):
    batch: Annotated[list[Count], Field(min_length=1), Distinct]  # images per SGD step
    epochs: Annotated[list[Count], Field(min_length=1), Distinct]
    lr: Annotated[list[Positive], Field(min_length=1), Distinct]
    hidden: Annotated[list[Count], Field(min_length=1), Distinct]


class E2Curves(Section):
    best: Count
    median: Count
    worst: Count


class E2(Section):
    dataset: str
    val_fraction: Fraction
    grid: E2Grid
    curves: E2Curves


class DeepGrid(Section):
    widths: Annotated[list[Count], Field(min_length=1), Distinct]  # units per hidden layer
    epochs: Count


class E3(Section):
    dataset: str
    val_fraction: Fraction
    lr: Positive
    batch_size: Count
    two_layers: DeepGrid
    three_layers: DeepGrid
    top: Count
    retrain_epochs: Count

    @model_validator(mode="after")
    def _top_within_grid(self):
        n_models = len(self.two_layers.widths) ** 2 + len(self.three_layers.widths) ** 3
        if self.top > n_models:
            raise KeyedError("top", f"must be at most the number of grid models ({n_models}), got {self.top}")
        return self


class Tsne(Section):
    perplexity: Positive
    n_jobs: Count  # threads


class LayerRef(Section):
    model: Annotated[str, Field(pattern=r"^\w+$")]  # a model of models/e1
    layer: Annotated[str, Field(min_length=1)]  # a module name of it


class E4(Section):
    dataset: str
    layers: Annotated[list[LayerRef], Field(min_length=1)]
    tsne: Tsne
    neighbors: Count  # k of neighboring_hit

    @model_validator(mode="after")
    def _distinct_layers(self):
        pairs = [(ref.model, ref.layer) for ref in self.layers]
        if len(set(pairs)) != len(pairs):
            raise KeyedError("layers", f"lists a layer twice: {pairs}")
        return self


class E5Tsne(Tsne):
    points: Count  # per split, a seeded sample

    @model_validator(mode="after")
    def _perplexity_below_points(self):
        if self.perplexity > self.points - 1:
            raise KeyedError("perplexity", f"must be at most points - 1 ({self.points - 1}), got {self.perplexity:g}")
        return self


E5_LOSSES = ("mse", "bce")


class E5(Section):
    datasets: Annotated[list[str], Field(min_length=1), Distinct]
    bottlenecks: Annotated[list[Count], Field(min_length=1), Distinct]  # code sizes, units
    losses: Annotated[list[Literal[E5_LOSSES]], Field(min_length=1), Distinct]
    train: Train
    tsne: E5Tsne
    neighbors: Count
    figure_images: Count

    @model_validator(mode="after")
    def _neighbors_below_points(self):
        if self.neighbors >= self.tsne.points:
            raise KeyedError("neighbors", f"must be below tsne.points ({self.tsne.points}), got {self.neighbors}")
        return self


PRETRAIN_ARCHS = (*ARCHS, "mobilenetv2_100", "mobilenetv2_050", "vit_micro_patch8")  # what the pretrain stage can train


class Pretrain(Section):
    dataset: str
    image_size: Count  # pixels
    max_images: Count | None
    archs: Annotated[list[Literal[PRETRAIN_ARCHS]], Field(min_length=1), Distinct]
    resnet50: Train | None = None  # the training block of each arch listed in archs
    resnet18: Train | None = None
    mobilenetv2_100: Train | None = None
    mobilenetv2_050: Train | None = None
    vit_micro_patch8: Train | None = None

    @model_validator(mode="after")
    def _a_block_per_arch(self):
        for arch in self.archs:
            if getattr(self, arch) is None:
                raise KeyedError(arch, f"is missing: pretrain.archs lists {arch}, which needs its training block")
        return self


class Finetune(Train):
    max_train_images: Count | None  # seeded subset of the train split (the time budget)


def _weights_spec(value: str) -> str:
    if not value.strip():
        raise ValueError(f"must be {HUB!r}, {RANDOM!r} or the path of a weights file, got {value!r}")
    return value


Weights = Annotated[str, AfterValidator(_weights_spec)]  # imagenet | none | a weights file path (checked to exist at run start)


class E7(Section):
    dataset: str
    arch: Literal[ARCHS]
    weights: Weights
    image_size: Count  # pixels
    layer: Annotated[str, Field(min_length=1)]  # the hooked module
    feature_batch_size: Count  # images per forward pass (speed only: the features do not depend on it)
    feature_precision: Literal[PRECISIONS]
    feature_compile: Literal[COMPILE_CHOICES]
    max_train_images: Count | None
    linear: Train
    finetune: Finetune

    @model_validator(mode="after")
    def _same_optimizer(self):
        if self.finetune.optimizer != self.linear.optimizer:
            raise KeyedError(
                "finetune.optimizer",
                f"must be the linear head's optimiser ({self.linear.optimizer}), as the catalogue compares them; got {self.finetune.optimizer!r}",
            )
        return self


E8_VARIANTS = ("scratch", "pretrained_all", "pretrained_layer4")


class E8(Section):
    dataset: str
    arch: Literal["resnet18"]
    weights: Weights
    image_size: Count
    max_train_images: Count | None
    variants: Annotated[list[Literal[E8_VARIANTS]], Field(min_length=1), Distinct]
    train: Train


class E9Baseline(Section):
    """Frozen features and a new linear head (the catalogue's MobileNetV2)."""

    arch: Literal[TIMM_ARCHS]
    weights: Weights
    feature_batch_size: Count  # images per forward pass (speed only)
    head: Train


class E9Vit(Section):
    """Every layer fine-tuned, new head (the catalogue's ViT-B/16, with weight decay)."""

    arch: Literal[TIMM_ARCHS]
    weights: Weights
    train: Train

    @model_validator(mode="after")
    def _a_vit(self):
        if not self.arch.startswith("vit_"):
            vits = ", ".join(a for a in TIMM_ARCHS if a.startswith("vit_"))
            raise KeyedError("arch", f"must be a vision transformer ({vits}); got {self.arch!r}")
        return self


class E9(Section):
    dataset: str
    subsets: Annotated[list[Annotated[int, Field(ge=2)]], Field(min_length=1), Distinct]  # classes per subset
    images_per_class: Count  # in all, shared out by the prepared split's fractions
    image_size: Count  # pixels, square; a multiple of the ViT's patch size
    baseline: E9Baseline
    vit: E9Vit


class E6Train(Section):
    """Mini-batch SGD of reprodl.numpy_nn (constant lr, no momentum)."""

    epochs: Count
    batch_size: Count  # samples per step
    lr: Positive


class E6Regression(E6Train):
    slope: Annotated[float, AfterValidator(_finite)]
    intercept: Annotated[float, AfterValidator(_finite)]
    noise: NonNegative  # std of the Gaussian noise added to y
    points: Annotated[int, Field(ge=2)]  # training points, x uniform in [-1, 1]


class E6Blobs(E6Train):
    points: Annotated[int, Field(ge=2)]  # per split (train, test), half per class
    centre: Positive  # the classes sit at (-centre, -centre) and (centre, centre)
    std: Positive


class E6Xor(E6Train):
    points: Annotated[int, Field(ge=4)]  # per split, a quarter per Gaussian
    std: Positive
    hidden: Count  # units


class E6MLP(E6Train):
    dataset: str
    hidden: Annotated[list[Count], Field(min_length=1)]  # units per hidden layer
    activation: Literal[ACTIVATIONS]


class E6Conv(E6Train):
    dataset: str
    kernel: Count  # samples
    channels: Count  # Conv1D output channels
    stride: Count
    pool: Count  # MaxPool1D kernel and stride
    hidden: Count
    max_train_images: Count | None  # a seeded, stratified subset of the train split (None: all)


class E6(Section):
    regression: E6Regression
    blobs: E6Blobs
    xor: E6Xor
    mnist_mlp: E6MLP
    usps_mlp: E6MLP
    usps_conv: E6Conv


# Which datasets each experiment may read: the task it needs, and for pretraining the
# sources that share no image with the targets (mnist, digit_scenes and their full datasets).
PRETRAIN_SOURCES = ("colour_digits", "sklearn_digits", "stanford_dogs", "usps")


class Params(Section):
    seed: Annotated[int, Field(ge=0)]
    device: Literal[DEVICES]  # where torch computes; resolved once by engine.resolve_device
    data: Data
    e1: E1
    e2: E2
    e3: E3
    e4: E4
    e5: E5
    pretrain: Pretrain
    e7: E7
    e8: E8
    e6: E6
    e9: E9

    @model_validator(mode="after")
    def _datasets_are_prepared(self):
        from .datasets import DATASETS

        wanted = [
            ("e1.dataset", self.e1.dataset, "multiclass"),
            ("e2.dataset", self.e2.dataset, "multiclass"),
            ("e3.dataset", self.e3.dataset, "multiclass"),
            ("e4.dataset", self.e4.dataset, "multiclass"),
            *((f"e5.datasets[{i}]", name, "multiclass") for i, name in enumerate(self.e5.datasets)),
            ("pretrain.dataset", self.pretrain.dataset, "multiclass"),
            ("e7.dataset", self.e7.dataset, "multilabel"),
            ("e8.dataset", self.e8.dataset, "multiclass"),
            ("e6.mnist_mlp.dataset", self.e6.mnist_mlp.dataset, "multiclass"),
            ("e6.usps_mlp.dataset", self.e6.usps_mlp.dataset, "multiclass"),
            ("e6.usps_conv.dataset", self.e6.usps_conv.dataset, "multiclass"),
            ("e9.dataset", self.e9.dataset, "multiclass"),
        ]
        for key, name, task in wanted:
            if name not in DATASETS:
                raise KeyedError(key, f"must be one of {', '.join(DATASETS)}; got {name!r}")
            if name not in self.data.datasets:
                raise KeyedError(key, f"is {name!r}, which is not prepared: add it to data.datasets ({', '.join(self.data.datasets)})")
            if DATASETS[name].task != task:
                raise KeyedError(key, f"must be a {task} dataset, got {name!r} ({DATASETS[name].task})")
        if self.pretrain.dataset not in PRETRAIN_SOURCES:
            raise KeyedError(
                "pretrain.dataset",
                f"must be one of {', '.join(PRETRAIN_SOURCES)} (a source that shares no image with the targets of E7 and E8); got {self.pretrain.dataset!r}",
            )
        return self


# --------------------------------------------------------------------------- sources.yaml


class SourceFile(Section):
    name: Annotated[str, Field(min_length=1, pattern=r"^[^/\\]+$")]  # a file name, no folder
    md5: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{32}$")]


class Source(Section):
    mirrors: Annotated[list[Annotated[str, Field(pattern=r"^https?://")]], Field(min_length=1)]  # tried in order
    files: Annotated[dict[str, SourceFile], Field(min_length=1)]


class Sources(RootModel[dict[str, Source]]):
    """sources.yaml: dataset name -> where its full-profile files are downloaded from."""

    model_config = ConfigDict(strict=True, frozen=True)


def load_sources(path: str | Path = "sources.yaml", needed: list[str] | None = None) -> dict[str, Source]:
    """sources.yaml -> {dataset: Source}; `needed` names the datasets that must have an entry."""
    from .datasets import DATASETS

    raw = read_yaml(path)
    file = Path(path).name
    lines = [f"{file}: {name} is not a known dataset (one of {', '.join(DATASETS)})" for name in raw if name not in DATASETS]
    try:
        sources = Sources.model_validate(raw).root
    except ValidationError as err:
        lines += error_lines(err, file, Sources)
        raise ConfigError(lines) from None
    lines += [f"{file}: {name} is missing (data.profile full prepares it: give its mirrors and files)" for name in needed or [] if name not in sources]
    if lines:
        raise ConfigError(lines)
    return sources


# --------------------------------------------------------------------------- loading


def load_params(path: str | Path = "params.yaml") -> Params:
    """params.yaml -> Params; ConfigError (one line per bad input) when anything is wrong."""
    return validate(read_yaml(path), Path(path).name)


def read_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError([f"{path}: not found; run from the repository root (dvc repro does)"])
    try:
        # Bytes: PyYAML decodes them itself (UTF-8, or UTF-16 with a BOM) and reports a bad byte as a
        # YAMLError like any other; a text stream would raise UnicodeDecodeError (a traceback).
        with open(path, "rb") as f:
            raw = yaml.load(f, Loader=_unique_key_loader())  # noqa: S506 (a SafeLoader)
    except DuplicateKeyError as err:
        raise ConfigError([f"{path.name}: {err}"]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError([f"{path.name}: {where}not valid YAML ({problem})"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path.name}: must be a mapping of sections, got {type(raw).__name__}"])
    return raw


class DuplicateKeyError(ValueError):
    def __init__(self, key: str, line: int):
        super().__init__(f"line {line}: {key} appears twice in one mapping (YAML keeps only the last)")
        self.key, self.line = key, line


def _unique_key_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """PyYAML's safe loader, except that a key given twice is an error, not a silent overwrite."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *block`: its keys may be overridden here
                    continue
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise DuplicateKeyError(str(key), key_node.start_mark.line + 1)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Loader


def validate(raw: dict, file: str = "params.yaml", model: type[BaseModel] = Params) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(error_lines(err, file, model)) from None


def error_lines(err: ValidationError, file: str, model: type[BaseModel]) -> list[str]:
    lines = []
    for e in err.errors():
        loc = list(e["loc"])
        error = (e.get("ctx") or {}).get("error")
        if isinstance(error, KeyedError):
            loc = [*loc, error.key]  # _dotted joins the parts with dots again
            message = error.message
        else:
            message = _message(e, loc, model)
        line = f"{file}: {_dotted(loc)} {message}"
        if line not in lines:
            lines.append(line)
    return lines


def _dotted(loc: list) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isdigit():
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(e: dict, loc: list, model: type[BaseModel]) -> str:
    kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
        return f"is not a known key ({hint})"
    if kind == "missing":
        return "is missing"
    if kind == "literal_error":
        return f"must be one of {ctx['expected'].replace(chr(39), '').replace(' or ', ', ')}; got {value!r}"
    if kind in ("greater_than_equal", "greater_than", "less_than", "less_than_equal"):
        bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}
        limit = next(v for k, v in ctx.items() if k in ("ge", "gt", "lt", "le"))
        return f"must be {bounds[kind]} {limit:g}, got {value!r}"
    if kind == "int_type":  # strict mode: 2.0 is an int_type error too, never int_from_float
        return f"must be an integer, got {value!r}"
    if kind == "float_type":  # inf and nan pass pydantic's float and are refused by _finite
        return f"must be a number, got {value!r}"
    if kind == "bool_type":
        return f"must be true or false, got {value!r}"
    if kind == "string_type":
        return f"must be a string, got {value!r}"
    if kind in ("list_type",):
        return f"must be a list, got {value!r}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "too_short" and isinstance(value, dict):
        return "must not be empty"
    if kind in ("model_type", "dict_type"):
        return f"must be a mapping of keys, got {value!r}"
    if kind == "too_short":
        return f"must list at least {ctx.get('min_length')} item(s), got {value!r}"
    if kind == "too_long":
        return f"must list at most {ctx.get('max_length')} item(s), got {value!r}"
    if kind == "string_pattern_mismatch":
        pattern = ctx["pattern"]
        if "0-9a-fA-F" in pattern:
            return f"must be 32 hex digits, got {value!r}"
        if "https?" in pattern:
            return f"must be an http(s) URL, got {value!r}"
        if "^[^/" in pattern:
            return f"must be a file name without a folder, got {value!r}"
        return f"must be a plain name (letters, digits, _), got {value!r}"
    if kind == "value_error":
        return str(ctx["error"])
    return f"{e['msg'][0].lower()}{e['msg'][1:]}, got {value!r}"


def _known_keys(model: type[BaseModel], loc: list) -> list[str]:
    """The field names of the sub-model at `loc` (list indices and the keys of mappings skipped)."""
    current: Any = model
    key_next = False  # the next part of loc is a key of a mapping of models, not a field name
    if isinstance(current, type) and issubclass(current, RootModel):  # sources.yaml: dataset name -> Source
        current, key_next = _model_of(current.model_fields["root"].annotation), True
    for part in loc:
        if key_next or isinstance(part, int):  # a mapping's key (a dataset, a source's file) or a list index
            key_next = False
            continue
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return []
        current = _model_of(field.annotation)
        key_next = getattr(field.annotation, "__origin__", None) is dict  # e.g. Source.files: name -> SourceFile
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _model_of(annotation: Any) -> Any:
    """The BaseModel class inside Optional[...], list[...] or Annotated[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    # Optional[M], list[M], dict[str, M] and Annotated[M, ...] all list M in __args__.
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
