import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from lightdet.models import ResNet, resnet_out_channels


def test_out_channels():
    assert resnet_out_channels(18, [0, 1, 2, 3]) == [64, 128, 256, 512]
    assert resnet_out_channels(50, [1, 3]) == [512, 2048]
    assert resnet_out_channels(101, [0]) == [256]
    with pytest.raises(ValueError, match="depth"):
        resnet_out_channels(42, [0])
    with pytest.raises(ValueError, match="out_indices"):
        resnet_out_channels(50, [4])


def test_feature_shapes_and_out_indices():
    feats = ResNet(18).eval()(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 2, 3)]
    feats = ResNet(18, out_indices=(1, 2)).eval()(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [128, 256]


@pytest.mark.parametrize("depth", [18, 50])
def test_parameter_names_are_torchvisions(depth):
    with torch.device("meta"):
        ours = ResNet(depth, norm="BN").state_dict()
        ref = getattr(torchvision.models, f"resnet{depth}")().state_dict()
    assert set(ours) == {k for k in ref if not k.startswith("fc.")}
    assert all(ours[k].shape == ref[k].shape for k in ours)


def test_frozen_stages_and_norm_eval():
    net = ResNet(18, frozen_stages=1, norm="BN", norm_eval=True).train()
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("conv1", "bn1", "layer1.")) for n in frozen)
    assert all(p.requires_grad for n, p in net.named_parameters() if n.startswith(("layer2", "layer4")))
    assert not net.bn1.training and not net.layer3[0].bn1.training
    trainable_stats = ResNet(18, frozen_stages=1, norm_eval=False).train()
    assert not trainable_stats.layer1[0].bn1.training and trainable_stats.layer2[0].bn1.training
    assert all(p.requires_grad for p in ResNet(18, frozen_stages=-1).parameters())


def test_norm_choices():
    assert isinstance(ResNet(18, norm="FrozenBN").bn1, FrozenBatchNorm2d)
    assert isinstance(ResNet(18, norm="GN").layer1[0].bn1, nn.GroupNorm)
    assert isinstance(ResNet(18, norm="SyncBN").bn1, nn.SyncBatchNorm)
    with pytest.raises(ValueError, match="norm"):
        ResNet(18, norm="LN")


def test_caffe_style_moves_stride_to_first_conv():
    with torch.device("meta"):
        net = ResNet(50, style="caffe")
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer2[0].conv2.stride == (1, 1)
    assert ResNet(50).layer2[0].conv2.stride == (2, 2)
    with pytest.raises(ValueError, match="caffe"):
        ResNet(18, style="caffe")


def test_resnext_groups():
    with torch.device("meta"):
        net = ResNet(101, groups=32, width_per_group=4)
    assert net.layer1[0].conv2.groups == 32 and tuple(net.layer1[0].conv2.weight.shape) == (128, 4, 3, 3)
    assert tuple(net.layer4[0].conv3.weight.shape) == (2048, 1024, 1, 1)


def test_loads_local_torchvision_and_lightdet_files(tmp_path):
    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    net = ResNet(18, weights=str(tmp_path / "tv.pth"), norm="FrozenBN")
    torch.testing.assert_close(net.layer3[1].conv2.weight, ref.layer3[1].conv2.weight)
    torch.testing.assert_close(net.layer2[0].bn1.running_var, ref.layer2[0].bn1.running_var)
    detector_state = {f"backbone.{k}": v for k, v in ref.state_dict().items()} | {"neck.x": torch.zeros(1)}
    torch.save({"state_dict": detector_state}, tmp_path / "det.pth")
    torch.testing.assert_close(ResNet(18, weights=str(tmp_path / "det.pth")).conv1.weight, ref.conv1.weight)


def test_bad_weights_are_named():
    with pytest.raises(ValueError, match="neither an existing file"):
        ResNet(18, weights="no/such/file.pth")
    with pytest.raises(ValueError, match="'ResNet18_Weights.IMAGENET9K' is not a torchvision weights name"):
        ResNet(18, weights="ResNet18_Weights.IMAGENET9K")


def test_weights_of_another_depth_are_rejected(tmp_path):
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="unexpected keys"):
        ResNet(18, weights=str(tmp_path / "r34.pth"))
