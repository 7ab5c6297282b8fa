"""ResNet encoders: torchvision names, shapes, CEM500K-format checkpoints."""

from __future__ import annotations

import pytest
import torch
from test_pretrain import _one_thread  # noqa: F401 (autouse fixture: one torch thread)

from emseg.errors import CorruptFileError
from emseg.models.resnet import ResNet, infer_arch, load_encoder_weights, read_encoder_file


def test_torchvision_parameter_names_resnet50():
    names = set(ResNet("resnet50", 1, 8).state_dict())
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv3.weight", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.num_batches_tracked", "layer4.2.bn3.bias", "layer3.5.conv2.weight"):
        assert key in names
    assert "layer3.6.conv1.weight" not in names
    # standard ResNet-50 backbone (width 64): 23,501,504 params with a 1-channel conv1 (torchvision: 23,508,032 for 3)
    full = ResNet("resnet50", 1, 64)
    assert sum(p.numel() for p in full.parameters()) == 23_508_032 - 2 * 64 * 7 * 7

def test_feature_strides():
    net = ResNet("resnet18", 1, 8)
    feats = net.features(torch.zeros(1, 1, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    assert [f.shape[1] for f in feats] == list(net.channels)

def fake_cem500k(path, arch="resnet50", width=8):
    """A file laid out like the CEM500K MoCoV2 release: module.encoder_q.* / encoder_k.* / queue + norms."""
    from emseg.pretrain.moco import MoCo

    torch.manual_seed(1)
    moco = MoCo(arch, width, dim=16, queue_size=32)
    state = {f"module.{k}": v for k, v in moco.state_dict().items()}
    torch.save({"epoch": 200, "arch": arch, "state_dict": state, "norms": [0.58331613, 0.09966064]}, path)
    return moco

def test_load_cem500k_format(tmp_path):
    moco = fake_cem500k(tmp_path / "cem500k_mocov2_resnet50_200ep.pth.tar")
    state, norms, _ = read_encoder_file(tmp_path / "cem500k_mocov2_resnet50_200ep.pth.tar")
    assert norms == pytest.approx((0.58331613, 0.09966064))
    assert not any(k.startswith("fc.") or "encoder_k" in k for k in state)
    assert infer_arch(state) == ("resnet50", 8)
    encoder = ResNet("resnet50", 1, 8)
    load_encoder_weights(encoder, tmp_path / "cem500k_mocov2_resnet50_200ep.pth.tar")
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, moco.encoder_q.state_dict()[key]), key

def test_mismatched_weights_are_rejected(tmp_path):
    fake_cem500k(tmp_path / "w.pt", "resnet18", 8)
    with pytest.raises(CorruptFileError, match="resnet50"):
        load_encoder_weights(ResNet("resnet50", 1, 8), tmp_path / "w.pt")

def test_imagenet_style_rgb_conv1_is_summed(tmp_path):
    rgb = ResNet("resnet18", 3, 8)
    state = dict(rgb.state_dict())
    state["fc.weight"] = torch.zeros(1000, 64)
    torch.save(state, tmp_path / "imagenet.pth")
    gray = ResNet("resnet18", 1, 8)
    load_encoder_weights(gray, tmp_path / "imagenet.pth")
    assert torch.allclose(gray.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
