"""The paper-scale profiles (params/paper*.yaml): each validates and says what it reproduces,
and the runs of paper_wu, paper_dnc and paper_semihard start — each profile's own loss, miner,
sampler and divide settings, trained for a few steps on a fixture in CUB-200-2011's real layout,
shrunk for a CPU (no pretrained weights offline, 32-px images, tiny batches)."""
import io
import math

import pytest
from PIL import Image

from lib import train
from lib.config import PARAMS_DIR, load_profile
from lib.data.decode import _decode

PAPER_PROFILES = sorted(p.stem for p in PARAMS_DIR.glob("paper*.yaml"))
BENCHMARKS = ("cub200", "cars196", "sop")
PUBLISHED_RECALL_AT_1 = {
    "paper_wu": {"cub200": 0.636, "cars196": 0.796, "sop": 0.727},  # Wu et al., ICCV 2017
    "paper_dnc": {"cub200": 0.659, "cars196": 0.846, "sop": 0.759},  # Sanakoyeu et al., CVPR 2019
    "paper_semihard": {},
}


def test_the_three_paper_profiles_exist():
    assert {"paper", *PUBLISHED_RECALL_AT_1} <= set(PAPER_PROFILES)


@pytest.mark.parametrize("name", PAPER_PROFILES)
def test_paper_profile_validates_at_paper_scale(name):
    profile = load_profile(name)
    assert profile.description.startswith(name)
    for dataset in BENCHMARKS:
        cfg = profile.run_config(dataset)
        assert cfg.model.backbone in ("resnet50", "resnet50.tv_in1k"), cfg.model.backbone  # D&C: torchvision's weights
        assert (cfg.model.pretrained, cfg.model.embedding_dim) == (True, 128)
        assert cfg.data.image_size == 224
        assert cfg.train.batch_size % cfg.sampler.m == 0


@pytest.mark.parametrize("name", sorted(PUBLISHED_RECALL_AT_1))
def test_published_targets_are_readable(name):
    published = load_profile(name).chapter("published")
    assert {dataset: v["recall@1"] for dataset, v in published.items()} == PUBLISHED_RECALL_AT_1[name]


def test_the_papers_settings():
    wu = load_profile("paper_wu").run_config("cub200")
    assert (wu.loss.name, wu.loss.kwargs["num_classes"], wu.loss.kwargs["learn_beta"]) == ("MarginLoss", 100, True)
    assert (wu.miner.kwargs["cutoff"], wu.miner.kwargs["nonzero_loss_cutoff"]) == (0.5, 1.4)
    assert (wu.train.batch_size, wu.sampler.m, wu.optim.name, wu.optim.lr) == (70, 5, "Adam", 1e-4)
    assert wu.divide.clusters == 1
    dnc = load_profile("paper_dnc").run_config("sop")
    assert (dnc.divide.clusters, dnc.divide.recluster_every, dnc.divide.features) == (8, 2, "backbone")
    assert 0 < dnc.divide.finetune_epochs < dnc.train.epochs
    semihard = load_profile("paper_semihard").run_config("cars196")
    assert (semihard.loss.name, semihard.loss.kwargs["margin"]) == ("TripletMarginLoss", 0.2)
    assert semihard.miner.kwargs == {"margin": 0.2, "type_of_triplets": "semihard"}


# --------------------------------------------------------------------------- runs start


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory, make_cub200):
    """16 training classes (CUB ids 1-16) and 4 test classes (101-104), 5 images each."""
    classes = {i: f"{i:03d}.Train_{i}" for i in (*range(1, 17), *range(101, 105))}
    return make_cub200(tmp_path_factory.mktemp("cub"), classes, per_class=5, size=(40, 32))


def cpu_config(name: str, root, epochs: int):
    """The profile's cub200 run with its loss, miner, sampler and divide kept, shrunk for a CPU."""
    cfg = load_profile(name).run_config("cub200")
    return cfg.with_overrides({
        "data.root": str(root), "data.image_size": 32, "data.options": {"download": False},
        "model.pretrained": False,
        "train.epochs": epochs, "train.steps_per_epoch": 2, "train.batch_size": 2 * cfg.sampler.m,
        "train.num_workers": 0, "train.device": "cpu", "train.threads": 1,
        "eval.nmi": False, "eval.every": 1000, "eval.batch_size": 64, "eval.save_embeddings": False,
        # D&C: 3 divided epochs (clustered at epochs 1 and 3, every 2 as in the profile), then 1 whole
        "divide.finetune_epochs": min(cfg.divide.finetune_epochs, 1),
    })


@pytest.mark.slow
@pytest.mark.parametrize("name, epochs", [("paper_wu", 2), ("paper_semihard", 2), ("paper_dnc", 4)])
def test_paper_run_starts(name, epochs, cub_root, tmp_path, monkeypatch):
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    profile_cfg = load_profile(name).run_config("cub200")
    cfg = cpu_config(name, cub_root, epochs)
    for section in ("loss", "miner", "distance", "sampler", "optim"):
        assert getattr(cfg, section) == getattr(profile_cfg, section), section
    assert cfg.divide.clusters == profile_cfg.divide.clusters

    result = train.run(cfg, progress=False)

    history = result.history
    assert list(history.epoch) == list(range(1, epochs + 1))
    assert history.loss.map(math.isfinite).all()
    for key in ("recall@1", "map@r", "spread_ratio", "val_loss", "train_loss"):
        assert math.isfinite(result.metrics[key]), key
    assert 0.0 <= result.metrics["recall@1"] <= 1.0
    if cfg.divide.clusters > 1:  # re-clustered at epochs 1 and 3; the last epoch trains the whole embedding
        assert history["cluster_sizes"].notna().tolist() == [True, False, True, False]
        assert all(len(sizes) == cfg.divide.clusters for sizes in history["cluster_sizes"].dropna())


def test_224_px_crops_decode_every_aspect_ratio():
    """CUB-sized photos whose crop box rounded to a negative offset were refused as corrupt."""
    for w, h in [(107, 333), (242, 775), (500, 333), (333, 500), (500, 375), (281, 110)]:
        buf = io.BytesIO()
        Image.new("RGB", (w, h), (40, 80, 120)).save(buf, "JPEG")
        assert _decode(buf.getvalue(), (224, 224), 3, "crop").shape == (3, 224, 224)
