"""Model factories for the built-in tasks.

Every factory builds a freshly initialised ``nn.Module`` from PyTorch's global RNG; a
``Task`` seeds that RNG locally (``Task.build_model``), so the same seed gives the same
weights. Layer names are stable and readable (``fc1``, ``conv1``, ...) because masks,
observations and reports are keyed by them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

#: Layer widths of the planted-teacher MLP (input, hidden..., classes).
TEACHER_SIZES = (64, 64, 64, 10)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """A ReLU MLP ``flatten -> fc1 -> relu1 -> ... -> fcN`` with the given layer widths.

    ``sizes`` lists the input width, the hidden widths and the number of outputs.
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes={tuple(sizes)!r}: expected at least two positive widths")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    depth = len(sizes) - 1
    for i, (fan_in, fan_out) in enumerate(pairwise(sizes), start=1):
        layers[f"fc{i}"] = nn.Linear(int(fan_in), int(fan_out))
        if i < depth:
            layers[f"relu{i}"] = nn.ReLU()
    return nn.Sequential(layers)


def digits_mlp() -> nn.Sequential:
    """MLP 64-128-64-10 for scikit-learn's 8x8 digits (input ``(1, 8, 8)``)."""
    return mlp((64, 128, 64, 10))


def digits_cnn() -> nn.Sequential:
    """Small CNN for 8x8 digits: two conv+BN+ReLU, max-pool, two Linear layers.

    It exists so that channel pruning with BatchNorm can be tested in seconds.
    """
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 16, 3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(16),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(16, 32, 3, padding=1, bias=False),
            bn2=nn.BatchNorm2d(32),
            relu2=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(32 * 4 * 4, 64),
            relu3=nn.ReLU(),
            fc2=nn.Linear(64, 10),
        )
    )


def mnist1d_mlp() -> nn.Sequential:
    """MLP 40-100-100-10 of the MNIST-1D paper (Greydanus, 2020) for its 40-sample signals."""
    return mlp((40, 100, 100, 10))


def mnist1d_cnn() -> nn.Sequential:
    """The MNIST-1D paper's CNN: three Conv1d of 25 channels, stride 2, then a Linear layer.

    Signals ``(40,)`` are read as one channel; lengths go 40 -> 19 -> 10 -> 5.
    """
    return nn.Sequential(
        OrderedDict(
            channel=nn.Unflatten(1, (1, 40)),
            conv1=nn.Conv1d(1, 25, 5, stride=2, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv1d(25, 25, 3, stride=2, padding=1),
            relu2=nn.ReLU(),
            conv3=nn.Conv1d(25, 25, 3, stride=2, padding=1),
            relu3=nn.ReLU(),
            flatten=nn.Flatten(),
            fc=nn.Linear(25 * 5, 10),
        )
    )


def teacher_mlp() -> nn.Sequential:
    """The student of the planted-teacher task: ``mlp(TEACHER_SIZES)``, same layer names."""
    return mlp(TEACHER_SIZES)


def planted_teacher(
    sizes: Sequence[int] = TEACHER_SIZES,
    density: float = 0.1,
    seed: int = 0,
    support_size: int | None = 8,
) -> tuple[nn.Sequential, dict[str, torch.Tensor], torch.Tensor]:
    """A random sparse ``mlp(sizes)``, its masks (layer name -> bool) and its input support.

    The first layer reads only ``support_size`` of the inputs (random ones, all their
    weights kept; ``None`` reads every input at ``density``); every other layer keeps
    exactly ``round(density * numel)`` weights. Weights are Gaussian, He-scaled by the kept
    fan-in; hidden biases are zero; the output bias is tuned on a Gaussian sample so that
    the argmax labels are spread evenly over the classes. The support (sorted input
    indices) is what a pruned student can recover without ambiguity: unlike hidden
    units, inputs have no order to permute.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density={density!r} must be in (0, 1]")
    inputs = int(sizes[0])
    if support_size is not None and not 1 <= support_size <= inputs:
        raise ValueError(f"support_size={support_size!r} must be between 1 and {inputs} inputs")
    generator = torch.Generator().manual_seed(seed)
    support = torch.randperm(inputs, generator=generator)[: support_size or inputs].sort().values
    teacher = mlp(sizes)
    masks: dict[str, torch.Tensor] = {}
    linear = [
        (name, layer) for name, layer in teacher.named_children() if isinstance(layer, nn.Linear)
    ]
    with torch.no_grad():
        for index, (name, layer) in enumerate(linear):
            numel = layer.weight.numel()
            if index == 0 and support_size is not None:
                mask = torch.zeros_like(layer.weight, dtype=torch.bool)
                mask[:, support] = True
                fan_in = float(support_size)
            else:
                kept = torch.randperm(numel, generator=generator)[: max(1, round(density * numel))]
                mask = torch.zeros(numel, dtype=torch.bool)
                mask[kept] = True
                mask = mask.view_as(layer.weight)
                fan_in = density * layer.in_features
            weight = torch.randn(layer.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
            layer.weight.copy_(weight * mask)
            layer.bias.zero_()
            masks[name] = mask
        _balance_output_bias(teacher, torch.randn(8192, inputs, generator=generator))
    return teacher.eval(), masks, support


def _balance_output_bias(model: nn.Sequential, probe: torch.Tensor, steps: int = 300) -> None:
    """Set the last layer's bias so that each class is the argmax on ~1/K of ``probe``."""
    last = next(m for m in reversed(model) if isinstance(m, nn.Linear))
    last.bias.zero_()
    logits = model(probe)
    bias = -logits.mean(dim=0)
    step = 0.5 * logits.std()
    target = 1.0 / logits.shape[1]
    for _ in range(steps):
        counts = torch.bincount((logits + bias).argmax(dim=1), minlength=logits.shape[1])
        bias -= step * (counts / len(probe) - target)
    last.bias.copy_(bias)


def lenet_300_100(num_classes: int = 10) -> nn.Sequential:
    """LeNet-300-100 for 28x28 inputs: 784-300-100-10, 266,200 weights (LTH, OpenLTH)."""
    return mlp((28 * 28, 300, 100, num_classes))


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """Classic LeNet-5 for 28x28 inputs with ReLU and max-pooling.

    conv6 5x5 (pad 2) -> pool -> conv16 5x5 -> pool -> fc120 -> fc84 -> fc10.
    """
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 6, 5, padding=2),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(6, 16, 5),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(16 * 5 * 5, 120),
            relu3=nn.ReLU(),
            fc2=nn.Linear(120, 84),
            relu4=nn.ReLU(),
            fc3=nn.Linear(84, num_classes),
        )
    )


class BasicBlock(nn.Module):
    """CIFAR ResNet basic block: two 3x3 conv+BN, with a 1x1 conv+BN shortcut on a shape change."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2) of He et al. (2016): three stages of 16/32/64 channels."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages = []
        in_channels = 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(in_channels, width, stride if i == 0 else 1))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of ``(3, 32, 32)`` images."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(self.pool(out), 1))


def resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20 for CIFAR (about 0.27M parameters), 1x1 conv shortcuts (option B)."""
    return CifarResNet(blocks_per_stage=3, num_classes=num_classes)


#: VGG-16 configuration: output channels, "M" = 2x2 max-pool.
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def vgg16_cifar(num_classes: int = 10) -> nn.Sequential:
    """VGG-16 with BatchNorm for 32x32 inputs (OpenLTH's ``cifar_vgg_16``): 13 conv + 1 Linear."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_channels, conv, pool = 3, 0, 0
    for item in VGG16_CONFIG:
        if item == "M":
            pool += 1
            layers[f"pool{pool}"] = nn.MaxPool2d(2)
            continue
        conv += 1
        layers[f"conv{conv}"] = nn.Conv2d(in_channels, item, 3, padding=1, bias=False)
        layers[f"bn{conv}"] = nn.BatchNorm2d(item)
        layers[f"relu{conv}"] = nn.ReLU()
        in_channels = item
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(512, num_classes)
    model = nn.Sequential(layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention whose four projections (q, k, v, o) are
    ``nn.Linear`` layers, so that each can be pruned (``nn.MultiheadAttention`` reads its
    projection weights directly, which a mask would never reach)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width={width} must be a multiple of heads={heads}")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.o = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split_heads(self.q(x)), split_heads(self.k(x)), split_heads(self.v(x))
        # written out rather than F.scaled_dot_product_attention, whose CPU kernel has no
        # second derivative (GraSP's Hessian-gradient product needs one)
        logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        attended = logits.masked_fill(future, -math.inf).softmax(dim=-1) @ v
        return self.o(attended.transpose(1, 2).reshape(batch, length, width))


class DecoderBlock(nn.Module):
    """A pre-norm transformer block: attention, then a GELU MLP (``up``, ``down``)."""

    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.mlp_norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.down(F.gelu(self.up(self.mlp_norm(x))))


class DecoderLM(nn.Module):
    """A GPT-style decoder-only language model over ``vocab`` tokens (bytes by default).

    Every projection is an ``nn.Linear`` (``blocks.<i>.attention.{q,k,v,o}``,
    ``blocks.<i>.{up,down}``), the prunable layers; the token and position embeddings,
    and the output head tied to the token embedding, are not pruned, as in Wanda and
    SparseGPT. The logits come as ``(batch, vocab, length)``, so that cross-entropy and
    ``argmax(dim=1)`` score every next token as they score a classifier's class.
    """

    def __init__(
        self,
        vocab: int = 256,
        context: int = 64,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        self.context = context
        self.embedding = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(DecoderBlock(width, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        if length > self.context:
            raise ValueError(f"sequences of {length} tokens exceed the context of {self.context}")
        positions = torch.arange(length, device=tokens.device)
        x = self.embedding(tokens.long()) + self.position(positions)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.norm(x), self.embedding.weight).transpose(1, 2)


#: The language-model sizes (``DecoderLM`` keywords): parameters in the prunable
#: projections 99K (tiny) and 590K (small).
LM_SIZES = {
    "tiny": {"width": 64, "depth": 2, "heads": 4, "hidden": 256},
    "small": {"width": 128, "depth": 3, "heads": 4, "hidden": 512},
}
