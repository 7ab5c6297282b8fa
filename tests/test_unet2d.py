"""2D U-Net-ResNet: same-size output, registry/checkpoint round trip, frozen encoder."""

from __future__ import annotations

import torch
from test_pretrain import _one_thread  # noqa: F401 (autouse fixture: one torch thread)

from emseg.models import build, load_checkpoint, save_checkpoint


def test_any_size_gives_same_size_output():
    model = build("unet2d_resnet", arch="resnet18", width=8).eval()
    assert model.spatial_dims == 2 and model.halo > 0
    for shape in [(64, 64), (50, 77), (33, 96)]:
        assert model(torch.zeros(2, 1, *shape)).shape == (2, 1, *shape)

def test_checkpoint_round_trip(tmp_path):
    model = build("unet2d_resnet", arch="resnet18", width=8, halo=32).eval()
    x = torch.randn(1, 1, 64, 64)
    save_checkpoint(tmp_path / "m.pt", model, architecture="unet2d_resnet", model_config=model.config,
                    voxel_size=(5, 5, 5), normalization={"mean": 0.5, "std": 0.2})
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.model.halo == 32 and loaded.model.spatial_dims == 2
    assert torch.allclose(loaded.model(x), model(x))

def test_frozen_encoder_keeps_weights_and_bn_stats():
    model = build("unet2d_resnet", arch="resnet18", width=8)
    model.freeze_encoder(True)
    model.train()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(torch.randn(2, 1, 64, 64)).mean()
    loss.backward()
    opt.step()
    assert not model.encoder.training
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.head.weight.grad is not None
