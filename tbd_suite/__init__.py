"""The TBD benchmark suite (Zhu et al., "Benchmarking and Analyzing Deep Neural Network Training",
IISWC 2018) plus the models that came after it, as PyTorch training workloads on seeded synthetic data.

    workload = tbd_suite.get("tbd:resnet50").build("small", batch_size=8, device="cpu")
    loss = workload.step()   # data, forward, loss, backward, optimizer step
"""
from __future__ import annotations

from tbd_suite.attention import Bert, DiT, Llama, Transformer, ViT
from tbd_suite.cnn import InceptionV3Workload, ResNet50
from tbd_suite.common import Workload
from tbd_suite.detection import DetectionWorkload
from tbd_suite.games import A3C, WGAN
from tbd_suite.rnn import DeepSpeech2, Seq2Seq

REGISTRY: dict[str, type[Workload]] = {cls.name: cls for cls in (
    ResNet50, InceptionV3Workload, Seq2Seq, Transformer, DetectionWorkload, DeepSpeech2, WGAN, A3C,
    Bert, Llama, ViT, DiT)}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Workload:
    """A fresh, unbuilt workload; `name` may carry the `tbd:` prefix."""
    key = name[4:] if name.startswith("tbd:") else name
    if key not in REGISTRY:
        raise KeyError(f"unknown TBD model {name!r}; known: {', '.join('tbd:' + n for n in REGISTRY)}")
    return REGISTRY[key]()


__all__ = ["REGISTRY", "Workload", "get", "names"]
