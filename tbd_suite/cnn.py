"""Convolutional image classifiers: ResNet-50 (He et al. 2016) and Inception-v3 (Szegedy et al.
2016), written from the papers (no torchvision)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tbd_suite.common import Workload, make_optimizer, run_blocks
from tbd_suite.samplers import ImageClass


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4, with a projection shortcut when the
    shape changes."""
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


def resnet_stage(cin: int, width: int, blocks: int, stride: int) -> list[nn.Module]:
    layers = [Bottleneck(cin, width, stride)]
    layers += [Bottleneck(width * 4, width) for _ in range(blocks - 1)]
    return layers


class ResNet(nn.Module):
    """7x7/2 stem, 3x3/2 max pool, four bottleneck stages (widths w, 2w, 4w, 8w), global pool, FC."""

    def __init__(self, blocks=(3, 4, 6, 3), width: int = 64, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], width
        for i, n in enumerate(blocks):
            layers += resnet_stage(cin, width * 2 ** i, n, 1 if i == 0 else 2)
            cin = width * 2 ** i * 4
        self.blocks = nn.ModuleList(layers)
        self.fc = nn.Linear(cin, classes)
        for m in self.modules():
            if isinstance(m, Bottleneck):  # zero-init the last BN of each residual (Goyal et al. 2017)
                nn.init.zeros_(m.bn3.weight)

    def forward(self, x):
        x = run_blocks(self.blocks, self.stem(x), self.checkpointing)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ResNet50(Workload):
    name = "resnet50"
    paper = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
    optimizer_name = "SGD, momentum 0.9, weight decay 1e-4, lr 0.1 (section 3.4)"
    loss_name = "cross-entropy"
    sizes = {
        "small": dict(blocks=(1, 1, 1, 1), width=16, image=32, classes=10, batch=8),
        "paper": dict(blocks=(3, 4, 6, 3), width=64, image=224, classes=1000, batch=32),
    }

    def make_model(self, cfg):
        return ResNet(cfg["blocks"], cfg["width"], cfg["classes"])

    def make_sampler(self, cfg):
        return ImageClass(3, cfg["image"], cfg["image"], cfg["classes"])

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.SGD, params, fused, lr=0.1, momentum=0.9, weight_decay=1e-4)

    def compute_loss(self, batch):
        images, labels = batch
        return F.cross_entropy(self.model(images), labels)


# --- Inception-v3 ------------------------------------------------------------------------------------
class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU(inplace=True))


class InceptionA(nn.Module):
    """35x35 module (figure 5): 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, cin, pool, w):
        super().__init__()
        self.b1 = ConvBN(cin, w(64), 1)
        self.b5 = nn.Sequential(ConvBN(cin, w(48), 1), ConvBN(w(48), w(64), 5, padding=2))
        self.b3 = nn.Sequential(ConvBN(cin, w(64), 1), ConvBN(w(64), w(96), 3, padding=1),
                                ConvBN(w(96), w(96), 3, padding=1))
        self.bp = ConvBN(cin, w(pool), 1)
        self.out = w(64) + w(64) + w(96) + w(pool)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class ReductionA(nn.Module):
    """35x35 -> 17x17 grid reduction (figure 10)."""

    def __init__(self, cin, w):
        super().__init__()
        self.b3 = ConvBN(cin, w(384), 3, 2)
        self.bd = nn.Sequential(ConvBN(cin, w(64), 1), ConvBN(w(64), w(96), 3, padding=1),
                                ConvBN(w(96), w(96), 3, 2))
        self.out = w(384) + w(96) + cin

    def forward(self, x):
        return torch.cat([self.b3(x), self.bd(x), F.max_pool2d(x, 3, 2)], 1)


class InceptionB(nn.Module):
    """17x17 module with factorized 1x7 / 7x1 convolutions (figure 6)."""

    def __init__(self, cin, c7, w):
        super().__init__()
        c7 = w(c7)
        self.b1 = ConvBN(cin, w(192), 1)
        self.b7 = nn.Sequential(ConvBN(cin, c7, 1), ConvBN(c7, c7, (1, 7), padding=(0, 3)),
                                ConvBN(c7, w(192), (7, 1), padding=(3, 0)))
        self.bd = nn.Sequential(ConvBN(cin, c7, 1), ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                                ConvBN(c7, c7, (1, 7), padding=(0, 3)), ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                                ConvBN(c7, w(192), (1, 7), padding=(0, 3)))
        self.bp = ConvBN(cin, w(192), 1)
        self.out = 4 * w(192)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b7(x), self.bd(x), self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class ReductionB(nn.Module):
    """17x17 -> 8x8 grid reduction."""

    def __init__(self, cin, w):
        super().__init__()
        self.b3 = nn.Sequential(ConvBN(cin, w(192), 1), ConvBN(w(192), w(320), 3, 2))
        self.b7 = nn.Sequential(ConvBN(cin, w(192), 1), ConvBN(w(192), w(192), (1, 7), padding=(0, 3)),
                                ConvBN(w(192), w(192), (7, 1), padding=(3, 0)), ConvBN(w(192), w(192), 3, 2))
        self.out = w(320) + w(192) + cin

    def forward(self, x):
        return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    """8x8 module with expanded filter banks (figure 7)."""

    def __init__(self, cin, w):
        super().__init__()
        self.b1 = ConvBN(cin, w(320), 1)
        self.b3 = ConvBN(cin, w(384), 1)
        self.b3a = ConvBN(w(384), w(384), (1, 3), padding=(0, 1))
        self.b3b = ConvBN(w(384), w(384), (3, 1), padding=(1, 0))
        self.bd = nn.Sequential(ConvBN(cin, w(448), 1), ConvBN(w(448), w(384), 3, padding=1))
        self.bda = ConvBN(w(384), w(384), (1, 3), padding=(0, 1))
        self.bdb = ConvBN(w(384), w(384), (3, 1), padding=(1, 0))
        self.bp = ConvBN(cin, w(192), 1)
        self.out = w(320) + 4 * w(384) + w(192)

    def forward(self, x):
        b3, bd = self.b3(x), self.bd(x)
        return torch.cat([self.b1(x), self.b3a(b3), self.b3b(b3), self.bda(bd), self.bdb(bd),
                          self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionV3(nn.Module):
    """Stem, 3 x A, reduction, 4 x B, auxiliary classifier, reduction, 2 x C, pool, dropout, FC.
    `scale` multiplies every channel count (1.0 is the paper)."""

    def __init__(self, classes=1000, scale=1.0):
        super().__init__()

        def w(c):
            return max(8, int(c * scale))
        self.stem = nn.Sequential(
            ConvBN(3, w(32), 3, 2), ConvBN(w(32), w(32), 3), ConvBN(w(32), w(64), 3, padding=1),
            nn.MaxPool2d(3, 2), ConvBN(w(64), w(80), 1), ConvBN(w(80), w(192), 3), nn.MaxPool2d(3, 2))
        mods, cin = [], w(192)
        for pool in (32, 64, 64):
            mods.append(InceptionA(cin, pool, w))
            cin = mods[-1].out
        mods.append(ReductionA(cin, w))
        cin = mods[-1].out
        for c7 in (128, 160, 160, 192):
            mods.append(InceptionB(cin, c7, w))
            cin = mods[-1].out
        self.blocks_17 = nn.ModuleList(mods)
        # 5x5 pooled grid as the paper's AvgPool(5, stride 3) gives at 17x17; adaptive so small inputs work
        self.aux = nn.Sequential(nn.AdaptiveAvgPool2d(5), ConvBN(cin, w(128), 1), ConvBN(w(128), w(768), 5),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w(768), classes))
        mods = [ReductionB(cin, w)]
        cin = mods[-1].out
        for _ in range(2):
            mods.append(InceptionC(cin, w))
            cin = mods[-1].out
        self.blocks_8 = nn.ModuleList(mods)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = run_blocks(self.blocks_17, self.stem(x), self.checkpointing)
        aux = self.aux(x)
        x = run_blocks(self.blocks_8, x, self.checkpointing)
        x = F.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), 0.2, self.training)
        return self.fc(x), aux


class InceptionV3Workload(Workload):
    name = "inception_v3"
    paper = "Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016"
    optimizer_name = "RMSProp, decay 0.9, epsilon 1.0, lr 0.045 (section 8)"
    loss_name = "cross-entropy with label smoothing 0.1, auxiliary head weighted 0.4"
    sizes = {
        "small": dict(scale=0.125, image=75, classes=10, batch=4),
        "paper": dict(scale=1.0, image=299, classes=1000, batch=32),
    }

    def make_model(self, cfg):
        return InceptionV3(cfg["classes"], cfg["scale"])

    def make_sampler(self, cfg):
        return ImageClass(3, cfg["image"], cfg["image"], cfg["classes"])

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.RMSprop, params, fused, lr=0.045, alpha=0.9, eps=1.0)

    def compute_loss(self, batch):
        images, labels = batch
        logits, aux = self.model(images)
        return (F.cross_entropy(logits, labels, label_smoothing=0.1)
                + 0.4 * F.cross_entropy(aux, labels, label_smoothing=0.1))
