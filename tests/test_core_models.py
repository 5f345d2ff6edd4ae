"""Backbones: output shapes, parameter counts as published, CPU forward+backward; the Network wrapper."""

from __future__ import annotations

import pytest
import torch

from samrepro import models
from samrepro.heads import AdaFace
from samrepro.models import Network, count_parameters
from samrepro.optim import get_setup

# Exact counts. WRN-28-10: 36.5M (Zagoruyko & Komodakis; SAM paper). PyramidNet-110 α=48: 1.7M and
# PyramidNet-272 α=200 bottleneck: 26.0M in Han et al.'s table — 1,772,706 and 26,288,692 (CIFAR-100) as the
# authors' code and pytorchcv count them. IResNet-50/100 (insightface, 512-d, 112×112): 43.6M and 65.2M.
# ResNet-50 (torchvision, 1000 classes): 25,557,032.
COUNTS = [
    ("wrn28_10", {}, 10, 36_479_194),
    ("wrn28_10", {}, 100, 36_536_884),
    ("wrn", {"depth": 16, "width": 4}, 10, 2_748_890),
    ("pyramidnet", {"depth": 110, "alpha": 48}, 10, 1_772_706),
    ("pyramidnet", {"depth": 272, "alpha": 200, "bottleneck": True}, 100, 26_288_692),
    ("resnet50", {}, 1000, 25_557_032),
    ("iresnet50", {}, 512, 43_590_848),
    ("iresnet100", {}, 512, 65_156_160),
]


@pytest.mark.parametrize("name, kw, classes, count", COUNTS, ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in COUNTS])
def test_parameter_counts(name, kw, classes, count):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        assert count_parameters(models.build(name, classes, **kw)) == count


def test_published_rounded_sizes():
    """The same counts rounded as the papers print them."""
    rounded = {"wrn28_10": 36.5, "iresnet50": 43.6, "iresnet100": 65.2}
    for name, _, classes, count in COUNTS:
        if name in rounded and classes in (10, 512):
            assert round(count / 1e6, 1) == rounded[name]


# forward + backward on CPU, batch 2 (BatchNorm1d needs > 1 sample); the 272-layer PyramidNet only counts above
FORWARD = [
    ("wrn28_10", {}, 10, (3, 32, 32), (10,)),
    ("pyramidnet", {"depth": 110, "alpha": 48}, 100, (3, 32, 32), (100,)),
    ("pyramidnet", {"depth": 20, "alpha": 48, "bottleneck": True}, 10, (3, 32, 32), (10,)),
    ("resnet50", {"in_channels": 1}, 101, (1, 32, 32), (101,)),
    ("iresnet50", {}, 512, (3, 112, 112), (512,)),
    ("iresnet100", {}, 512, (3, 112, 112), (512,)),
    ("small_cnn", {"in_channels": 1}, 10, (1, 8, 8), (10,)),
    ("small_cnn", {"in_channels": 1}, 10, (1, 28, 28), (10,)),
    ("small_cnn", {}, 10, (3, 32, 32), (10,)),
    ("small_cnn", {}, 64, (3, 112, 112), (64,)),
]


@pytest.mark.parametrize(
    "name, kw, classes, shape, out", FORWARD, ids=[f"{f[0]}-{f[3][-1]}" for f in FORWARD]
)
def test_forward_backward(name, kw, classes, shape, out):
    torch.manual_seed(0)
    net = models.build(name, classes, **kw).train()
    y = net(torch.randn(2, *shape))
    assert y.shape == (2, *out) and torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_iresnet_embedding_bn_weight_frozen():
    net = models.build("iresnet18", 128)
    assert not net.features.weight.requires_grad and torch.all(net.features.weight == 1)
    assert net.fc.in_features == 512 * 7 * 7 and net.fc.out_features == 128


def test_network_classification_and_face():
    torch.manual_seed(0)
    cls_net = Network.build(get_setup("SAM"), "small_cnn", 10, model_kw={"in_channels": 1})
    x = torch.randn(3, 1, 8, 8)
    assert cls_net.head is None and cls_net(x).shape == (3, 10)
    face = Network.build(
        get_setup("FlatFace-AACE-AdaFace"), "small_cnn", 7, embedding_dim=16, model_kw={"in_channels": 1}
    )
    assert isinstance(face.head, AdaFace) and face.head.weight.shape == (7, 16)
    y = torch.tensor([0, 1, 2])
    assert face(x, y).shape == (3, 7) and face.embed(x).shape == (3, 16)
    assert any(p is face.head.weight for p in face.parameters())  # the optimizer sees the class matrix
    with pytest.raises(ValueError, match="embedding_dim"):
        Network.build(get_setup("ArcFace"), "small_cnn", 7)


def test_bad_model_inputs():
    with pytest.raises(ValueError, match="wrn28_10"):
        models.build("wrn28-10", 10)
    with pytest.raises(ValueError, match="does not take width"):
        models.build("wrn28_10", 10, width=4)
    with pytest.raises(ValueError, match="depth"):
        models.build("wrn", 10, depth=27)
    with pytest.raises(ValueError, match="depth"):
        models.build("pyramidnet", 10, depth=111, bottleneck=True)
    with pytest.raises(ValueError, match="alpha"):
        models.build("pyramidnet", 10, alpha=0)
    with pytest.raises(ValueError, match="num_classes"):
        models.build("small_cnn", 0)
    with pytest.raises(ValueError, match="input_size"):
        models.build("iresnet50", 512, input_size=100)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        models.build("small_cnn", 10)(torch.randn(3, 64))
