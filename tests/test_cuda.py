"""The GPU path: CUDA, bf16 autocast, channels-last and DDP under torchrun.

Skipped on machines without CUDA (CI has none); `scripts/gpu_check.sh` runs them where a GPU is
lent, with the throughput benchmarks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lib import train
from lib import trainer as trainer_lib
from lib.config import load_profile
from lib.models import EmbeddingNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
REPO = Path(__file__).resolve().parent.parent


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
    trainer = trainer_lib.Trainer(tiny(), progress=False)
    assert trainer.cuda and trainer.device.type == "cuda"
    weight = next(p for p in trainer.model.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    with trainer.autocast():
        assert torch.is_autocast_enabled("cuda")
        assert torch.get_autocast_dtype("cuda") == torch.bfloat16
    fp32 = trainer_lib.Trainer(tiny(train__amp=False), progress=False)
    with fp32.autocast():
        assert not torch.is_autocast_enabled("cuda")


def test_amp_training_on_cuda_learns(runs):
    result = train.run(tiny(train__steps_per_epoch=20), progress=False)
    assert np.isfinite(result.history.loss).all()
    assert np.isfinite(result.arrays["test_embeddings"]).all()
    chance = 1 / len(np.unique(result.arrays["test_labels"]))
    assert result.metrics["precision@1"] > 3 * chance, result.metrics


def test_ddp_two_ranks_share_one_gpu(runs):
    env = {**os.environ, "METRIC_RUNS": str(runs), "OMP_NUM_THREADS": "1"}
    args = ["--standalone", "--nproc_per_node=2", "-m", "lib.train", "smoke", "--set", "train.device=cuda",
            "--set", "eval.oneshot=false", "--set", "train.steps_per_epoch=3"]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    done = list(runs.glob("*/complete.json"))
    assert len(done) == 1
    history = json.loads((done[0].parent / "history.json").read_text())
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
