"""params.yaml's `device`: resolved once (engine.resolve_device), then the engine, the grid trainer
and the hooks compute there, and every stage's metrics record the device that ran.

On a machine without CUDA `auto` is the CPU and every test here runs; the tests marked `gpu`
(conftest.py skips them, saying why, where torch sees no CUDA) train on the GPU for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from configs import ROOT, errors, raw_params

from reprodl import config, engine, grid, hooks, models

CUDA = torch.cuda.is_available()


@pytest.fixture
def cuda_flags():
    """resolve_device sets cuDNN's and matmul's flags for a CUDA device: put them back."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


def blobs(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 12, 12, generator=g) * 0.3 + (y.float() * 2 - 1).view(-1, 1, 1, 1)
    return x, y


def convnet() -> torch.nn.Module:
    return models.build_model({"kind": "convnet", "channels": [2, 4], "kernel": 3, "hidden": 8, "image_size": 12, "n_classes": 2}, seed=0)


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().cpu() for p in model.parameters()])


CFG = engine.TrainConfig(epochs=2, batch_size=16, lr=0.05, momentum=0.9, augment=engine.Augment(shift=1, rotate=5), seed=0)


# --------------------------------------------------------------------------- resolution


def test_the_committed_device_is_auto_and_resolves_to_cuda_only_where_there_is_one():
    assert raw_params()["device"] == "auto"
    assert engine.resolve_device("auto") == (torch.device("cuda", 0) if CUDA else torch.device("cpu"))


@pytest.mark.parametrize("available", [False, True])
def test_cpu_is_the_cpu_and_auto_follows_cuda_availability(available, cuda_flags):
    assert engine.resolve_device("cpu", cuda_available=available) == torch.device("cpu")
    assert engine.resolve_device("auto", cuda_available=available, env={}) == (torch.device("cuda", 0) if available else torch.device("cpu"))


def test_cuda_without_cuda_is_a_param_error_naming_the_param():
    with pytest.raises(config.ParamError) as caught:
        engine.resolve_device("cuda", cuda_available=False)
    message = str(caught.value)
    assert message.startswith("params.yaml: device is cuda, but torch.cuda.is_available() is False"), message
    assert "device: auto or cpu" in message and caught.value.key == "device"


def test_an_unknown_or_missing_device_is_refused_by_the_config():
    assert errors({"device": "gpu"}) == ["params.yaml: device must be one of auto, cpu, cuda; got 'gpu'"]
    assert errors({"device": "CUDA"}) == ["params.yaml: device must be one of auto, cpu, cuda; got 'CUDA'"]
    from configs import DELETE

    assert errors({"device": DELETE}) == ["params.yaml: device is missing"]
    with pytest.raises(config.ParamError, match=r"^params\.yaml: device must be one of auto, cpu, cuda; got 'tpu'$"):
        engine.resolve_device("tpu")  # the library checks too, for callers that skip the config


@pytest.mark.skipif(CUDA, reason="there is a CUDA GPU here: device: cuda is valid")
def test_a_stage_asked_for_cuda_without_one_stops_with_one_line_before_any_work(tmp_path):
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params({"device": "cuda"})))
    result = subprocess.run(
        [sys.executable, "stages/pretrain.py", "resnet18"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "REPRODL_PROGRESS": "0"}, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("params.yaml: device is cuda, but torch.cuda.is_available() is False"), result.stderr
    assert not any((tmp_path / folder).exists() for folder in ("models", "metrics", "timings")), "no outputs"


# --------------------------------------------------------------------------- distributed


def test_ddp_backend_is_gloo_on_the_cpu_and_nccl_on_local_ranks_gpu(cuda_flags):
    assert engine.distributed_backend(torch.device("cpu")) == "gloo"
    assert engine.distributed_backend(engine.resolve_device("auto", cuda_available=False, env={"LOCAL_RANK": "1"})) == "gloo"
    device = engine.resolve_device("auto", cuda_available=True, env={"LOCAL_RANK": "1"})  # torchrun's second process on a GPU host
    assert device == torch.device("cuda", 1) and engine.distributed_backend(device) == "nccl"
    assert engine.resolve_device("cuda", cuda_available=True, env={"LOCAL_RANK": "3"}) == torch.device("cuda", 3)


def test_init_distributed_follows_the_device_not_the_machine(monkeypatch, cuda_flags):
    """CUDA present but device cpu: gloo, no GPU touched (nccl cannot reduce CPU tensors). A CUDA
    device: nccl, with that GPU made the current one. The process group itself is stubbed."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(engine.dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    for name, value in {"WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}.items():
        monkeypatch.setenv(name, value)
    assert engine.init_distributed(torch.device("cpu")) == (0, 1)  # the stub joins no group
    assert calls == [("init", "gloo")]
    calls.clear()
    engine.init_distributed(engine.resolve_device("auto"))  # "CUDA available": LOCAL_RANK's GPU
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl")]


# --------------------------------------------------------------------------- placement and training


def test_place_moves_whole_datasets_that_fit_and_leaves_the_rest():
    x, y = blobs()
    size = x.numel() * 4 + y.numel() * 8
    assert engine.place((x, y), "cpu") == (x, y)  # nothing moves on the CPU
    moved = engine.place((x, y), "meta", free_bytes=2 * size + 1)  # within half the free memory
    assert all(t.device.type == "meta" for t in moved) and moved[0].shape == x.shape
    kept = engine.place((x, y), "meta", free_bytes=2 * size - 1)  # over half: batches move one at a time
    assert kept[0] is x and kept[1] is y


def test_fit_moves_the_model_to_the_device_and_records_it(monkeypatch):
    moved, placed = [], []
    model = convnet()
    to = model.to
    monkeypatch.setattr(model, "to", lambda *a, **k: (moved.append(a or tuple(k.values())), to(*a, **k))[1])
    place = engine.place
    monkeypatch.setattr(engine, "place", lambda tensors, device, **k: (placed.append(torch.device(device)), place(tensors, device, **k))[1])
    x, y = blobs()
    history = engine.fit(model, (x, y), (x[:32], y[:32]), CFG, progress=False, device=torch.device("cpu"))
    assert moved and moved[0] == (torch.device("cpu"),), "the engine moves the model"
    assert placed == [torch.device("cpu")] * 2, "and offers the train and val tensors to the device"
    assert history.device == "cpu" and history.precision == "fp32"


def test_training_on_the_resolved_cpu_is_bitwise_training_where_the_model_is():
    x, y = blobs()
    runs = []
    for device in (None, engine.resolve_device("cpu")):
        model = convnet()
        engine.fit(model, (x, y), (x[:32], y[:32]), CFG, progress=False, device=device)
        runs.append(weights(model))
    assert torch.equal(runs[0], runs[1])


def test_the_grid_records_its_device_and_runs_gpu_jobs_in_this_process(monkeypatch):
    data = (torch.rand(40, 12, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 3)
    result, stack = grid.fit_stack([grid.ModelSpec((4,), 0.1, 0)], data, data, batch_size=8, epochs=1, seed=0, n_classes=3, progress=False, device="cpu")
    assert result.device == "cpu" and stack.w1.device.type == "cpu"
    ran = []
    monkeypatch.setattr(grid, "_fit_stack_job", lambda job: ran.append(job["seed"]) or job["seed"])
    # Two workers asked, but the jobs share one GPU: they run here, in order (a spawned worker would not see the stub).
    assert grid.fit_stacks([{"seed": 1, "device": torch.device("cuda", 0)}, {"seed": 2, "device": "cuda"}], workers=2) == [1, 2]
    assert ran == [1, 2]


def test_hook_features_come_back_on_the_inputs_device():
    model = convnet()
    x, _ = blobs(10)
    features = hooks.extract_features(model, x, ["hidden"], bf16=False, progress=False, device="cpu")["hidden"]
    assert features.device == x.device and features.shape == (10, 8)


# --------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
def test_fit_on_cuda_trains_there_in_bf16_when_asked_and_matches_the_cpu(cuda_flags):
    device = engine.resolve_device("cuda")
    x, y = blobs()
    cpu_model, gpu_model = convnet(), convnet()
    engine.fit(cpu_model, (x, y), (x[:32], y[:32]), CFG, progress=False, device="cpu")
    history = engine.fit(gpu_model, (x, y), (x[:32], y[:32]), CFG, progress=False, device=device)
    assert history.device == "cuda" and history.precision == "fp32"
    assert all(p.device == device for p in gpu_model.parameters())
    torch.testing.assert_close(weights(gpu_model), weights(cpu_model), rtol=1e-3, atol=1e-4)  # same batches, same draws
    assert engine.predict(gpu_model, x).device.type == "cpu"
    bf16 = engine.fit(convnet(), (x, y), None, engine.TrainConfig(**{**CFG.__dict__, "precision": "bf16"}), progress=False, device=device)
    assert bf16.precision == "bf16" and bf16.device == "cuda"


@pytest.mark.gpu
def test_the_grid_and_the_hooks_on_cuda_match_the_cpu(cuda_flags):
    device = engine.resolve_device("cuda")
    data = (torch.rand(64, 12, generator=torch.Generator().manual_seed(0)), torch.arange(64) % 3)
    specs = [grid.ModelSpec((4,), 0.1, 0), grid.ModelSpec((6,), 0.05, 1)]
    on_cpu, _ = grid.fit_stack(specs, data, data, batch_size=8, epochs=2, seed=0, n_classes=3, progress=False)
    on_gpu, stack = grid.fit_stack(specs, data, data, batch_size=8, epochs=2, seed=0, n_classes=3, progress=False, device=device)
    assert on_gpu.device == "cuda" and stack.w1.device == device
    assert abs(on_gpu.val_loss - on_cpu.val_loss).max() < 1e-4
    model, (x, _) = convnet(), blobs(10)
    cpu = hooks.extract_features(model, x, ["hidden"], bf16=False, progress=False)["hidden"]
    gpu = hooks.extract_features(model, x, ["hidden"], bf16=False, progress=False, device=device)["hidden"]
    assert gpu.device.type == "cpu"
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)
