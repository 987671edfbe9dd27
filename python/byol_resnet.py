"""A PyTorch ResNet-18 that loads `byol export` files of any stem, width and encoder norm.

Names and layouts are torchvision's (conv1, bn1, layer1.0.conv1, layer2.0.downsample.0, ...),
so at width 1 with the ImageNet stem `torchvision.models.resnet18()` loads the same file; this
module adds the CIFAR stem (3x3 conv, stride 1, no max pool), widths other than 1, group norm with
weight standardization, and no norm, as byol-wgpu builds them.

    from safetensors.torch import load_file
    from safetensors import safe_open
    from byol_resnet import from_safetensors
    model = from_safetensors("encoder.safetensors").eval()   # images -> [N, 512 * width]

Inputs: RGB in [0, 1], resized to the file's byol.image_size, normalized with its byol.input_mean
and byol.input_std (ImageNet's).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class StdConv2d(nn.Conv2d):
    """Weight-standardized convolution: each filter zero-mean, unit-variance over in x kh x kw."""

    def forward(self, x):
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return F.conv2d(x, (w - mean) / torch.sqrt(var + 1e-5), None, self.stride, self.padding)


def _norm(kind, c):
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group-ws":
        return nn.GroupNorm(max(g for g in range(1, min(32, c) + 1) if c % g == 0), c)
    return nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, c_in, c, stride, norm, conv):
        super().__init__()
        self.conv1 = conv(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, c)
        self.conv2 = conv(c, c, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, c)
        self.downsample = None
        if stride != 1 or c_in != c:
            self.downsample = nn.Sequential(conv(c_in, c, 1, stride, 0, bias=False), _norm(norm, c))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class ResNet18(nn.Module):
    def __init__(self, width_mult=1.0, stem="imagenet", norm="batch"):
        super().__init__()
        conv = StdConv2d if norm == "group-ws" else nn.Conv2d
        width = lambda c: max(1, round(c * width_mult))
        c0 = width(64)
        if stem == "imagenet":
            self.conv1 = conv(3, c0, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = conv(3, c0, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = _norm(norm, c0)
        c_in = c0
        for i, base in enumerate([64, 128, 256, 512]):
            c = width(base)
            blocks = [BasicBlock(c_in, c, 1 if i == 0 else 2, norm, conv), BasicBlock(c, c, 1, norm, conv)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = c

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x.mean(dim=(2, 3))


def from_safetensors(path):
    """The encoder in a `byol export` file, built from its metadata and loaded strictly."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    model = ResNet18(float(meta.get("byol.width_mult", 1)), meta.get("byol.stem", "imagenet"),
                     meta.get("byol.encoder_norm", "batch"))
    state = {k: v for k, v in load_file(path).items()
             if not k.startswith(("projector.", "predictor.", "fc."))}
    model.load_state_dict(state, strict=True)
    return model
