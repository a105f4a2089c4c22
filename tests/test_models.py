"""Embedding networks: timm backbones by name, input channels, head, projector dropped at test."""
import pytest
import torch

from lib.config import ModelConfig
from lib.models import EmbeddingNet


@pytest.mark.parametrize("backbone,in_chans", [("test_resnet", 1), ("convnet", 1), ("resnet18", 4)])
def test_backbones_and_channels(backbone, in_chans):
    net = EmbeddingNet(ModelConfig(backbone=backbone, embedding_dim=32), in_chans).eval()
    x = torch.randn(3, in_chans, 32, 32)
    assert net(x).shape == (3, 32)
    z = net.embed(x)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))


def test_blog_projector_is_dropped_at_test():
    # The blog: 2048-d ResNet-50 features -> Linear 1024 -> BN -> ReLU -> Linear 256, dropped at test.
    cfg = ModelConfig(backbone="test_resnet", embedding_dim=None, projector=[1024, 256], projector_at_test=False)
    net = EmbeddingNet(cfg, 4).eval()
    x = torch.randn(2, 4, 32, 32)
    assert net(x).shape == (2, 256)
    assert net.embed(x).shape == (2, net.backbone.num_features) and net.eval_dim == net.backbone.num_features
    layers = [type(m).__name__ for m in net.projector]
    assert layers == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    kept = EmbeddingNet(ModelConfig(backbone="test_resnet", projector=[64, 16], projector_at_test=True), 1).eval()
    assert kept.embed(torch.randn(2, 1, 28, 28)).shape == (2, 16)


def test_unnormalised_embedding():
    net = EmbeddingNet(ModelConfig(backbone="convnet", embedding_dim=8, normalize=False), 1).eval()
    assert not torch.allclose(net.embed(torch.randn(4, 1, 28, 28)).norm(dim=1), torch.ones(4))


@pytest.mark.slow
def test_pretrained_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="model.pretrained: false"):
        EmbeddingNet(ModelConfig(backbone="resnet18", pretrained=True), 3)
