"""The GPU path: CUDA, bf16 autocast and channels-last (DDP under torchrun on a GPU is
tests/test_train.py::test_ddp_two_processes[cuda]).

Skipped on machines without CUDA (CI has none); `scripts/gpu_check.sh` runs them where a GPU is
lent, with the trainer tests and the throughput benchmarks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib import train
from lib import trainer as trainer_lib
from lib.config import load_profile
from lib.models import EmbeddingNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path))
    return tmp_path


def tiny(**dotted):
    cfg = load_profile("smoke").run_config("omniglot", train__steps_per_epoch=3, eval__oneshot=False,
                                            train__device="cuda")
    return cfg.with_overrides({k.replace("__", "."): v for k, v in dotted.items()})


@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_forward_matches_cpu_in_fp32(channels_last):
    cfg = tiny()
    torch.manual_seed(0)
    model = EmbeddingNet(cfg.model, 1).eval()
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        gpu_model = model.to("cuda", memory_format=fmt)
        torch.backends.cudnn.allow_tf32 = False
        got = gpu_model(x.to("cuda").contiguous(memory_format=fmt)).cpu()
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)


def test_trainer_uses_bf16_autocast_and_channels_last_on_cuda():
    trainer = trainer_lib.Trainer(tiny(train__precision="bf16"), progress=False)
    assert trainer.cuda and trainer.device.type == "cuda"
    weight = next(p for p in trainer.model.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    with trainer.autocast():
        assert torch.is_autocast_enabled("cuda")
        assert torch.get_autocast_dtype("cuda") == torch.bfloat16
    fp32 = trainer_lib.Trainer(tiny(train__precision="fp32"), progress=False)
    with fp32.autocast():
        assert not torch.is_autocast_enabled("cuda")


def test_amp_training_on_cuda_learns(runs):
    result = train.run(tiny(train__steps_per_epoch=20, train__precision="bf16"), progress=False)
    assert np.isfinite(result.history.loss).all()
    assert np.isfinite(result.arrays["test_embeddings"]).all()
    chance = 1 / len(np.unique(result.arrays["test_labels"]))
    assert result.metrics["precision@1"] > 3 * chance, result.metrics
