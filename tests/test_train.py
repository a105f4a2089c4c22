"""The trainer: a tiny real run on Omniglot, the cache, seeds, resume, divergence, DDP."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lib import cache, train, trainer as trainer_lib
from lib.config import load_profile
from lib.evaluate import embedding_spread

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def tiny(**dotted):
    """Two epochs of three steps on a few hundred Omniglot images: seconds on a CPU."""
    cfg = load_profile("smoke").run_config("omniglot", train__steps_per_epoch=3, eval__oneshot=False)
    return cfg.with_overrides({k.replace("__", "."): v for k, v in dotted.items()})


def test_run_records_diagnostics_and_caches(runs):
    cfg = tiny()
    first = train.run(cfg, progress=False)
    h = first.history
    assert list(h.epoch) == [1, 2]
    for column in ["loss", "loss_over_margin", "nonzero_fraction", "tuples", "d_ap_mean", "d_ap_std",
                   "d_an_mean", "d_an_std", "d_an_hist", "grad_norm", "val_loss", "val_recall@1",
                   "val_map@r", "val_spread_ratio", "val_mean_pairwise_distance", "val_dim_variance_mean",
                   "val_collapsed", "images_per_second"]:
        assert column in h, column
    assert np.isfinite(h.loss).all() and (h.tuples >= 0).all()
    assert sum(h.d_an_hist.iloc[0]) > 0
    for key in ["recall@1", "recall@8", "map@r", "r_precision", "precision@1", "nmi", "collapsed"]:
        assert key in first.metrics
    assert first.arrays["test_embeddings"].shape[1] == cfg.model.embedding_dim
    assert (runs / first.key / "complete.json").exists()
    start = time.perf_counter()
    again = train.run(cfg, progress=False)
    assert time.perf_counter() - start < 2
    assert again.metrics == json.loads(json.dumps(first.metrics))
    np.testing.assert_array_equal(again.arrays["test_embeddings"], first.arrays["test_embeddings"])


@pytest.mark.parametrize("loss, miner", [("MultiSimilarityLoss", "MultiSimilarityMiner"),
                                         ("MarginLoss", "WuDistanceWeightedMiner")])
def test_losses_with_a_numeric_or_a_learnt_beta_train(runs, loss, miner):
    """Probe: MultiSimilarityLoss (beta a plain number) crashed the trainer's epoch summary, which
    assumed MarginLoss's learnt beta tensor."""
    result = train.run(tiny(loss__name=loss, loss__kwargs={}, miner__name=miner, miner__kwargs={}), progress=False)
    assert np.isfinite(result.history.loss).all()
    assert ("beta" in result.history) == (loss == "MarginLoss")


def test_key_changes_with_config_and_data(runs):
    cfg = tiny()
    key = train.run_dir_for(cfg).key
    assert train.run_dir_for(cfg.with_overrides({"optim.lr": 0.01})).key != key
    assert cache.run_key(cfg.to_dict(), "another-data-fingerprint") != key


def test_same_seed_same_numbers_on_cpu(tmp_path, monkeypatch):
    cfg = tiny()
    results = []
    for name in ("a", "b"):
        monkeypatch.setenv("METRIC_RUNS", str(tmp_path / name))
        results.append(train.run(cfg, progress=False))
    assert results[0].history.loss.tolist() == results[1].history.loss.tolist()
    np.testing.assert_array_equal(results[0].arrays["test_embeddings"], results[1].arrays["test_embeddings"])
    other = train.run(cfg.with_overrides({"train.seed": 1}), progress=False)
    assert other.history.loss.tolist() != results[0].history.loss.tolist()


def test_nan_loss_stops_without_caching(runs, monkeypatch):
    cfg = tiny()

    original = trainer_lib.build_loss

    class NanLoss(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.reducer, self.margin = inner, inner.reducer, 0.1

        def forward(self, *args, **kwargs):
            return self.inner(*args, **kwargs) * float("nan")

    monkeypatch.setattr(trainer_lib, "build_loss", lambda c, d, *sizes: NanLoss(original(c, d, *sizes)))
    with pytest.raises(train.TrainingDiverged, match="loss became nan at epoch 1, step 1.*lower optim.lr"):
        train.run(cfg, progress=False)
    run_dir = train.run_dir_for(cfg)
    assert run_dir.file("failed.json").exists()
    assert not run_dir.complete


def test_collapse_rule():
    assert embedding_spread(np.ones((50, 8), dtype=np.float32))["spread_ratio"] < 0.05
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert embedding_spread(x)["spread_ratio"] > 0.6


def _cli(args, env, **kwargs):
    return subprocess.run([sys.executable, "-m", "lib.train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_cli_reports_a_misspelt_key(runs):
    env = {**os.environ}
    out = _cli(["smoke", "--set", "optim.lrr=0.1"], env)
    assert out.returncode == 2
    assert "unknown key 'optim.lrr'" in out.stderr and "valid keys here" in out.stderr


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(runs, tmp_path):
    # Slow enough per epoch that the kill lands after the first checkpoint, before the end. On the
    # CPU, where runs are bitwise reproducible (cuDNN's autotuned kernels are not, so the losses of
    # a resumed GPU run match only to rounding).
    args = ["smoke", "--set", "train.epochs=3", "--set", "train.steps_per_epoch=12", "--set", "eval.oneshot=false",
            "--set", "train.device=cpu"]
    env = {**os.environ, "METRIC_RUNS": str(runs)}
    proc = subprocess.Popen([sys.executable, "-m", "lib.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    checkpoint = None
    while time.time() < deadline and proc.poll() is None:
        found = list(runs.glob("*/checkpoint.pt"))
        if found:
            checkpoint = found[0]
            break
        time.sleep(0.05)
    assert checkpoint is not None, "no checkpoint was written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = checkpoint.parent
    assert not (run_dir / "complete.json").exists()
    saved_epoch = torch.load(checkpoint, weights_only=True)["epoch"]
    assert saved_epoch < 2
    resumed = _cli(args, env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "complete.json").exists(), (resumed.stdout, sorted(p.name for p in run_dir.iterdir()))
    history = json.loads((run_dir / "history.json").read_text())
    # The uninterrupted reference, in a separate cache.
    env_ref = {**env, "METRIC_RUNS": str(tmp_path / "reference")}
    assert _cli(args, env_ref, timeout=300).returncode == 0
    reference = json.loads(next((tmp_path / "reference").glob("*/history.json")).read_text())
    assert [h["loss"] for h in history] == [h["loss"] for h in reference]


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch built without gloo")
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
@pytest.mark.slow
def test_ddp_two_processes(runs, device):
    """Two ranks under torchrun train one run: gloo on the CPU; on one GPU both ranks share it."""
    env = {**os.environ, "METRIC_RUNS": str(runs), "OMP_NUM_THREADS": "1"}
    args = ["--standalone", "--nproc_per_node=2", "-m", "lib.train", "smoke", "--set", f"train.device={device}",
            "--set", "eval.oneshot=false", "--set", "train.steps_per_epoch=3"]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    done = list(runs.glob("*/complete.json"))
    assert len(done) == 1
    history = json.loads((done[0].parent / "history.json").read_text())
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)


@pytest.mark.parametrize("projector", [[], [32, 16]])
def test_validation_loss_from_one_forward_pass_equals_a_forward_per_batch(projector, runs):
    """scoring.validation_loss reads the split's loss-side embeddings (Trainer.embed_both) instead
    of a second forward pass per batch: in eval mode the two must agree."""
    from lib import scoring
    from lib.batching import iterate_batches, make_batches

    cfg = tiny(model__projector=projector, model__projector_at_test=False, train__precision="fp32")
    trainer = trainer_lib.Trainer(cfg, progress=False)
    trainer.fit()
    split = trainer.splits.test
    evaluated, loss_space = trainer.embed_both(split)
    np.testing.assert_allclose(evaluated, trainer.embed(split), atol=1e-5)
    np.testing.assert_allclose(loss_space, trainer.embed(split, space="loss"), atol=1e-5)
    assert loss_space.shape[1] == (projector[-1] if projector else cfg.model.embedding_dim)

    np.random.seed(12345)
    batches = make_batches(cfg, split.labels, min(20, max(1, len(split) // cfg.train.batch_size)))
    trainer.model.eval()
    per_batch = []
    with torch.no_grad():
        for images, extra, labels in iterate_batches(split, batches, 0, False):
            emb = trainer.model(trainer.prepare(images, extra, augment=False)).float()
            per_batch.append(trainer.loss_fn(emb, labels, trainer.miner(emb, labels)))
    expected = float(torch.stack(per_batch).mean())
    assert scoring.validation_loss(trainer, split, loss_space) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_a_classification_loss_gets_the_training_classes_and_the_loss_side_size(runs):
    cfg = tiny(**{"loss__name": "NormalizedSoftmaxLoss", "loss__kwargs": {"temperature": 0.05},
                  "miner__name": None, "distance__name": "CosineSimilarity", "distance__kwargs": {},
                  "sampler__name": "shuffle", "model__projector": [24]})
    trainer = trainer_lib.Trainer(cfg, progress=False)
    classes = len(np.unique(trainer.splits.train.labels))
    assert tuple(trainer.loss_fn.W.shape) == (24, classes)
    history = trainer.fit()
    assert np.isfinite([h["loss"] for h in history]).all()


def test_margin_loss_keeps_one_beta_unless_the_params_ask_for_one_per_class(runs):
    cfg = tiny(**{"loss__name": "MarginLoss", "loss__kwargs": {"margin": 0.2, "beta": 1.2, "learn_beta": True}})
    trainer = trainer_lib.Trainer(cfg, progress=False)
    assert trainer.loss_fn.beta.numel() == 1
