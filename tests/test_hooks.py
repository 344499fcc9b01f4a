"""reprodl.hooks.extract_features: exactly the layer's output, for any batch size, and no hook left behind."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from reprodl import hooks, models

CONV = {"kind": "convnet", "channels": [4, 8], "kernel": 3, "hidden": 16, "image_size": 12, "n_classes": 3, "dropout": 0.5}


def images(n: int = 23) -> torch.Tensor:
    return torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(0))


def chain_to(model: nn.Sequential, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The named layer's output, computed by calling the submodules one after the other (no hooks)."""
    model.eval()
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            if name == layer:
                return x
    raise KeyError(layer)


@pytest.mark.parametrize("layer", ["act1", "hidden", "logits"])
def test_features_are_exactly_the_layers_output(layer):
    model, x = models.build_model(CONV, seed=0), images()
    expected = chain_to(models.build_model(CONV, seed=0), layer, x)
    got = hooks.extract_features(model, x, [layer], bf16=False, progress=False)[layer]
    assert got.dtype == torch.float32 and got.shape == (len(x), expected[0].numel())
    # flatten(1) of the logical (N, C, H, W) layout, whatever the memory format the model ran in
    assert torch.allclose(got, expected.flatten(1), atol=1e-5), float((got - expected.flatten(1)).abs().max())


def test_several_layers_at_once_and_an_mlp():
    x = images()
    conv = models.build_model(CONV, seed=0)
    both = hooks.extract_features(conv, x, ["act2", "hidden"], bf16=False, progress=False)
    assert list(both) == ["act2", "hidden"]
    assert torch.allclose(both["hidden"], chain_to(models.build_model(CONV, seed=0), "hidden", x), atol=1e-5)
    assert torch.allclose(both["act2"], chain_to(models.build_model(CONV, seed=0), "act2", x).flatten(1), atol=1e-5)
    spec = {"kind": "mlp", "n_inputs": 144, "hidden": [10, 7], "n_classes": 3}
    mlp = models.build_model(spec, seed=2)
    got = hooks.extract_features(mlp, x, ["act1", "hidden"], bf16=False, progress=False)
    assert got["act1"].shape == (23, 10) and got["hidden"].shape == (23, 7)
    assert torch.equal(got["hidden"], chain_to(models.build_model(spec, seed=2), "hidden", x))


def test_features_do_not_depend_on_the_batch_size():
    model, x = models.build_model(CONV, seed=1), images(37)
    whole = hooks.extract_features(model, x, ["hidden"], batch_size=256, bf16=False, progress=False)["hidden"]
    for batch_size in (1, 5, 36):  # 37 rows: uneven last batches, and a batch of one
        got = hooks.extract_features(model, x, ["hidden"], batch_size=batch_size, bf16=False, progress=False)["hidden"]
        assert got.shape == whole.shape == (37, 16)
        assert torch.allclose(got, whole, atol=1e-6), batch_size


class Boom(nn.Module):
    """Raises on the call numbered `fail_on` (1-based), counting calls."""

    def __init__(self, fail_on: int):
        super().__init__()
        self.calls, self.fail_on = 0, fail_on

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("boom in the forward pass")
        return x


def test_hooks_are_removed_when_the_forward_pass_raises():
    model = models.build_model({"kind": "mlp", "n_inputs": 144, "hidden": 6, "n_classes": 3}, seed=0)
    model.add_module("boom", Boom(fail_on=2))  # after the logits: the hooked layers have already run on batch 2
    x = images(20)
    with pytest.raises(RuntimeError, match="boom in the forward pass"):
        hooks.extract_features(model, x, ["hidden", "logits"], batch_size=8, bf16=False, progress=False)
    left = {name: len(m._forward_hooks) for name, m in model.named_modules() if m._forward_hooks}
    assert left == {}, f"forward hooks left behind: {left}"
    # A later extraction captures its own batches only (a stale hook would add rows to nothing, or crash).
    got = hooks.extract_features(model, x, ["hidden"], batch_size=8, bf16=False, progress=False)["hidden"]
    assert got.shape == (20, 6)
    assert torch.allclose(got, chain_to(models.build_model({"kind": "mlp", "n_inputs": 144, "hidden": 6, "n_classes": 3}, seed=0), "hidden", x), atol=1e-6)


def test_an_unknown_layer_is_refused_before_any_work():
    model = models.build_model(CONV, seed=0)
    with pytest.raises(KeyError, match="no module named 'hiden'.*did you mean hidden"):
        hooks.extract_features(model, images(), ["hiden"], bf16=False, progress=False)
    assert not any(m._forward_hooks for m in model.modules())


class ConvBN(nn.Module):
    """conv -> bn -> relu twice, then a pool; `reuse` also adds conv2's raw output after its bn
    (a conv output used twice: folding bn2 into conv2 would change that sum)."""

    def __init__(self, reuse: bool = False):
        super().__init__()
        self.reuse = reuse
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        gen = torch.Generator().manual_seed(0)
        for bn in (self.bn1, self.bn2):  # running statistics and affine weights away from the identity
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=gen))
            bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            bn.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            bn.bias.data.copy_(torch.randn(c, generator=gen))

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        raw = self.conv2(x)
        x = self.bn2(raw) + (raw if self.reuse else 0)
        return self.pool(torch.relu(x))


def test_conv_bn_pairs_follow_the_data_flow():
    model = ConvBN().eval()
    assert hooks.conv_bn_pairs(model, images(2)) == [("conv1", "bn1"), ("conv2", "bn2")]
    # A batch norm fed by something else than a conv's own output is no pair.
    odd = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2)).eval()
    assert hooks.conv_bn_pairs(odd, images(2)) == []


def test_folding_keeps_the_features_and_leaves_the_callers_model_alone():
    model, x = ConvBN().eval(), images(9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = hooks.extract_features(model, x, ["pool"], bf16=False, progress=False, fold=False)["pool"]
    folded = hooks.extract_features(model, x, ["pool"], bf16=False, progress=False)["pool"]
    assert torch.allclose(folded, plain, rtol=1e-5, atol=1e-6), float((folded - plain).abs().max())
    assert isinstance(model.bn1, nn.BatchNorm2d) and isinstance(model.bn2, nn.BatchNorm2d)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # The fold itself: the batch norms are gone (Identity in their place), the features the same.
    with torch.inference_mode():  # as extract_features runs it (it leaves the model's weights inference tensors)
        fused = hooks.fold_batchnorm(model, hooks.conv_bn_pairs(model, x[:2]))
        assert torch.allclose(fused(x), model(x), rtol=1e-5, atol=1e-6)
    assert isinstance(fused.bn1, nn.Identity) and isinstance(fused.bn2, nn.Identity)
    assert not torch.equal(fused.conv2.weight, model.conv2.weight) and fused.conv2.bias is not None


def test_a_hooked_conv_keeps_its_batch_norm():
    model, x = ConvBN().eval(), images(5)
    got = hooks.extract_features(model, x, ["conv2", "pool"], bf16=False, progress=False)
    with torch.no_grad():
        raw = model.conv2(torch.relu(model.bn1(model.conv1(x))))
    assert torch.allclose(got["conv2"], raw.flatten(1), atol=1e-6)  # the conv's own output, not bn2's


def test_a_fold_that_would_change_the_features_is_not_used():
    model, x = ConvBN(reuse=True).eval(), images(6)
    plain = hooks.extract_features(model, x, ["pool"], bf16=False, progress=False, fold=False)["pool"]
    got = hooks.extract_features(model, x, ["pool"], bf16=False, progress=False)["pool"]
    assert torch.equal(got, plain)  # the check refused the fold: the very same computation
    # ... which really would have changed them: bn2 folded also changes the reused raw output.
    with torch.inference_mode():
        fused = hooks.fold_batchnorm(model, hooks.conv_bn_pairs(model, x[:2]))
        assert not torch.allclose(fused(x).flatten(1), plain, atol=1e-3)


def test_resnet_folds_every_batch_norm():
    import torchvision

    model, x = torchvision.models.resnet18(num_classes=4).eval(), torch.rand(3, 3, 32, 32)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(hooks.conv_bn_pairs(model, x[:2])) == n_bn == 20
    plain = hooks.extract_features(model, x, ["avgpool"], bf16=False, progress=False, fold=False)["avgpool"]
    folded = hooks.extract_features(model, x, ["avgpool"], bf16=False, progress=False)["avgpool"]
    assert torch.allclose(folded, plain, rtol=1e-4, atol=1e-5)


def test_the_batches_run_through_the_folded_copy():
    model, x = ConvBN().eval(), images(9)
    calls = []
    model.bn2.register_forward_hook(lambda *_: calls.append(1))
    hooks.extract_features(model, x, ["pool"], batch_size=3, bf16=False, progress=False, fold=False)
    assert len(calls) == 3  # one per batch
    calls.clear()
    hooks.extract_features(model, x, ["pool"], batch_size=3, bf16=False, progress=False)
    assert len(calls) == 1  # the fold's one trace of the first rows; no batch runs the batch norm


def counting_inductor(graphs: list):
    """torch.compile's default backend (inductor), noting each graph it is handed."""
    from torch._inductor.compile_fx import compile_fx

    def backend(gm, example_inputs):
        graphs.append([tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)])
        return compile_fx(gm, example_inputs)

    return backend


@pytest.mark.skipif(hooks.cpp_compiler() is None, reason="torch.compile needs a C++ compiler (g++) for its CPU kernels")
def test_a_compiled_extraction_gives_the_eager_features_from_one_graph(monkeypatch):
    """Three splits of 23, 9 and 5 rows in batches of 8: each short last batch is padded to 8, so one
    graph serves them all; the padding rows' features are dropped; the caller's model is left as it was."""
    model = ConvBN()
    splits = {"train": torch.rand(23, 1, 12, 12), "val": torch.rand(9, 1, 12, 12), "test": torch.rand(5, 1, 12, 12)}
    eager = hooks.extract_split_features(model, splits, ["pool", "bn1"], batch_size=8, bf16=False, progress=False)
    graphs: list = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kw: real_compile(module, backend=counting_inductor(graphs), **kw))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compiled = hooks.extract_split_features(model, splits, ["pool", "bn1"], batch_size=8, bf16=False, progress=False, compile=True)
    assert len(graphs) == 1 and (8, 1, 12, 12) in graphs[0], graphs
    for split, x in splits.items():
        for layer in ("pool", "bn1"):
            assert compiled[split][layer].shape == eager[split][layer].shape and len(eager[split][layer]) == len(x)
            assert torch.allclose(compiled[split][layer], eager[split][layer], atol=1e-5), (split, layer)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and isinstance(model.bn1, nn.BatchNorm2d)
    assert not any(m._forward_hooks for m in model.modules())


def test_compile_needs_a_cpp_compiler_and_says_so_before_any_work(monkeypatch):
    monkeypatch.setattr(hooks, "cpp_compiler", lambda: None)
    model = ConvBN()
    with pytest.raises(hooks.CompileUnavailable, match="needs a C\\+\\+ compiler"):
        hooks.extract_features(model, torch.rand(4, 1, 12, 12), ["pool"], progress=False, compile=True)
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(hooks.CompileUnavailable):
        hooks.use_compile("always", 1)
    assert hooks.use_compile("auto", 10 * hooks.COMPILE_PAYS_PIXELS) is False  # auto: eager where it cannot compile


def test_auto_compiles_large_extractions_on_a_cpu_only(monkeypatch):
    monkeypatch.setattr(hooks, "cpp_compiler", lambda: "g++")
    big = hooks.COMPILE_PAYS_PIXELS
    assert hooks.use_compile("auto", big) is True and hooks.use_compile("auto", big - 1) is False
    assert hooks.use_compile("auto", big, "cuda") is False, "measured on CPUs only"
    assert hooks.use_compile("always", 1) is True and hooks.use_compile("never", 10 * big) is False
    with pytest.raises(ValueError, match="unknown compile choice 'yes'; allowed: auto, always, never"):
        hooks.use_compile("yes", big)
