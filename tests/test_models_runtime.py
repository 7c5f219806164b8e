"""medaudit.models.runtime: the one guard of a caller's model state, and the channels-last rule.

Every check runs with a body that raises as well: the guard's promise is "as it came", also
when the pass fails half-way.
"""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from torch import nn

from medaudit.models.runtime import (
    inference_state,
    model_device,
    model_family,
    model_state_preserved,
    use_channels_last,
)


class Net(nn.Module):
    """A CNN with a head being fine-tuned: mixed train/eval flags, 4-D weights, BatchNorm buffers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)).mean((2, 3)))


def _mixed() -> Net:
    net = Net().eval()
    net.head.train()  # the head trains while the backbone is frozen
    return net


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


class Boom(Exception):
    pass


@pytest.mark.parametrize("raises", [False, True])
def test_every_submodules_flag_and_the_layout_come_back(raises):
    net = _mixed()
    before = _flags(net)
    seen = {}
    with pytest.raises(Boom) if raises else nullcontext():
        with inference_state(net, torch.device("cpu"), channels_last=True) as model:
            assert model is net  # in place: no copy of the weights
            seen["training"] = any(_flags(net))
            seen["nhwc"] = net.conv.weight.is_contiguous(memory_format=torch.channels_last)
            model(torch.randn(2, 3, 5, 5).contiguous(memory_format=torch.channels_last))
            if raises:
                raise Boom
    assert seen == {"training": False, "nhwc": True}
    assert _flags(net) == before
    assert net.conv.weight.is_contiguous() and not net.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_channels_last_callers_layout_and_parameter_objects_are_kept():
    net = _mixed().to(memory_format=torch.channels_last)
    weight = net.conv.weight
    with model_state_preserved(net):
        net.to(memory_format=torch.contiguous_format)
    assert net.conv.weight is weight  # optimizers hold the Parameter object: it must stay the same one
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_requires_grad_and_grad_objects_come_back_and_written_values_stay():
    net = _mixed()
    net.conv.weight.requires_grad_(False)
    grad = torch.full_like(net.head.weight, 7.0)
    net.head.weight.grad = grad
    with pytest.raises(Boom), model_state_preserved(net):
        for p in net.parameters():
            p.requires_grad_(not p.requires_grad)
        net.zero_grad()  # what pytorch_grad_cam does
        net.bn.running_mean.fill_(3.0)  # a value the block computed: kept, not rolled back
        raise Boom
    assert not net.conv.weight.requires_grad and net.head.weight.requires_grad
    assert net.head.weight.grad is grad and net.conv.bias.grad is None
    assert torch.equal(net.bn.running_mean, torch.full((8,), 3.0))


def test_a_replaced_buffer_is_put_back_where_it_lived():
    net = _mixed().to(memory_format=torch.channels_last)
    net.register_buffer("mask", torch.ones(1, 8, 3, 3).contiguous(memory_format=torch.channels_last))
    with model_state_preserved(net):
        net.mask = torch.zeros(1, 8, 3, 3)  # Module.to replaces buffers like this
    assert net.mask.is_contiguous(memory_format=torch.channels_last) and not net.mask.is_contiguous()
    assert net.mask.sum() == 0  # the value written stays


def test_tensors_moved_back_inside_inference_mode_stay_trainable():
    """A caller in torch.inference_mode() gets ordinary tensors back, not inference tensors."""
    net = _mixed()
    with torch.inference_mode(), inference_state(net, channels_last=True) as model:
        model(torch.randn(1, 3, 4, 4).contiguous(memory_format=torch.channels_last))
    assert not net.conv.weight.is_inference()
    net(torch.randn(1, 3, 4, 4)).sum().backward()  # would raise for inference tensors
    assert net.conv.weight.grad is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to move the model to")
@pytest.mark.parametrize("raises", [False, True])
def test_device_comes_back_for_parameters_buffers_and_grads(raises):
    net = _mixed()
    grad = torch.ones_like(net.head.weight)
    net.head.weight.grad = grad
    cuda = torch.device("cuda")
    with pytest.raises(Boom) if raises else nullcontext():
        with inference_state(net, cuda, channels_last=True) as model:
            assert model_device(model).type == "cuda" and net.bn.running_var.is_cuda
            model(torch.randn(2, 3, 5, 5, device=cuda).contiguous(memory_format=torch.channels_last))
            if raises:
                raise Boom
    assert all(t.device.type == "cpu" for t in [*net.parameters(), *net.buffers()])
    assert net.head.weight.grad is grad and grad.device.type == "cpu"
    assert net.conv.weight.is_contiguous() and _flags(net) == _flags(_mixed())


def test_channels_last_rule_cnns_on_cpu_and_cuda_only():
    cnn = Net()
    token_model = nn.Module()
    token_model.patch_embed = nn.Conv2d(3, 4, 2, stride=2)
    assert model_family(cnn) == "cnn" and model_family(token_model) == "transformer"
    assert use_channels_last(cnn, torch.device("cpu")) and use_channels_last(cnn, torch.device("cuda"))
    assert not use_channels_last(cnn, torch.device("mps"))
    assert not use_channels_last(token_model, torch.device("cpu"))


def test_model_device_of_a_module_without_tensors_is_the_cpu():
    assert model_device(nn.ReLU()) == torch.device("cpu")
