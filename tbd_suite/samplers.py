"""Seeded synthetic samples. Each sampler is a small picklable object (DataLoader workers may be
spawned) whose `__call__(gen)` draws one sample from the generator it is given."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageClass:
    """An image (normal noise) and a class label."""
    channels: int
    height: int
    width: int
    classes: int

    def __call__(self, gen):
        image = torch.randn(self.channels, self.height, self.width, generator=gen)
        label = torch.randint(0, self.classes, (), generator=gen)
        return image, label


@dataclass(frozen=True)
class TokenPair:
    """Source and target token sequences for translation (ids >= 4; 0 pad, 1 bos, 2 eos, 3 mask)."""
    vocab: int
    src_len: int
    tgt_len: int

    def __call__(self, gen):
        src = torch.randint(4, self.vocab, (self.src_len,), generator=gen)
        tgt = torch.randint(4, self.vocab, (self.tgt_len,), generator=gen)
        tgt[0] = 1
        return src, tgt


@dataclass(frozen=True)
class Tokens:
    """One token sequence, for a language model."""
    vocab: int
    length: int

    def __call__(self, gen):
        return torch.randint(4, self.vocab, (self.length,), generator=gen)


@dataclass(frozen=True)
class MaskedTokens:
    """BERT's masked-LM sample: 15% of positions are targets; of those 80% become [MASK] (id 3),
    10% a random token and 10% stay (Devlin et al. 2019, section 3.1). Untargeted labels are -100."""
    vocab: int
    length: int

    def __call__(self, gen):
        tokens = torch.randint(4, self.vocab, (self.length,), generator=gen)
        labels = torch.full_like(tokens, -100)
        chosen = torch.rand(self.length, generator=gen) < 0.15
        chosen[0] = True  # at least one target per sequence
        labels[chosen] = tokens[chosen]
        roll = torch.rand(self.length, generator=gen)
        inputs = tokens.clone()
        inputs[chosen & (roll < 0.8)] = 3
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        inputs[swap] = torch.randint(4, self.vocab, (int(swap.sum()),), generator=gen)
        segments = (torch.arange(self.length) >= self.length // 2).long()
        return inputs, segments, labels


@dataclass(frozen=True)
class Detection:
    """An image with `boxes` ground-truth boxes (x1, y1, x2, y2 in pixels) and their class labels."""
    size: int
    boxes: int
    classes: int

    def __call__(self, gen):
        image = torch.randn(3, self.size, self.size, generator=gen)
        wh = (0.15 + 0.45 * torch.rand(self.boxes, 2, generator=gen)) * self.size
        xy = torch.rand(self.boxes, 2, generator=gen) * (self.size - wh)
        boxes = torch.cat([xy, xy + wh], dim=1)
        labels = torch.randint(1, self.classes + 1, (self.boxes,), generator=gen)
        return image, boxes, labels


@dataclass(frozen=True)
class Speech:
    """A spectrogram (1 x freq x time) and a character transcript for CTC (labels 1..chars-1,
    0 is the CTC blank); the transcript is at most a quarter as long as the spectrogram."""
    freq: int
    time: int
    chars: int
    max_label: int

    def __call__(self, gen):
        spec = torch.randn(1, self.freq, self.time, generator=gen)
        length = torch.randint(self.max_label // 2, self.max_label + 1, (), generator=gen)
        labels = torch.randint(1, self.chars, (self.max_label,), generator=gen)
        labels[length:] = 0
        return spec, labels, length


@dataclass(frozen=True)
class Frames:
    """An A3C rollout: `steps + 1` stacked game frames (4 x size x size, in [0, 1]) and rewards."""
    steps: int
    size: int

    def __call__(self, gen):
        frames = torch.randint(0, 256, (self.steps + 1, 4, self.size, self.size), generator=gen,
                               dtype=torch.uint8).float().div_(255)
        rewards = torch.randint(-1, 2, (self.steps,), generator=gen).float()
        return frames, rewards


@dataclass(frozen=True)
class Latents:
    """A diffusion training sample: a latent image (as from a VAE encoder) and a class label."""
    channels: int
    size: int
    classes: int

    def __call__(self, gen):
        return (torch.randn(self.channels, self.size, self.size, generator=gen),
                torch.randint(0, self.classes, (), generator=gen))
