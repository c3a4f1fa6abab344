"""Phases (forward, backward, optimizer, communication, data, other) from event names.

A CPU event gets the phase of its innermost enclosing event whose name says one (an optimizer
annotation, an autograd-engine function, a DataLoader iterator, a collective); GPU work inherits
the phase of the runtime call that launched it, collectives always count as communication.
Work inside a step that no name claims is `forward` before the step's first backward work and
`other` after it.
"""
from __future__ import annotations

import re

import numpy as np

from daydream.names import CLASSIFY_CHARS

PHASES = ("forward", "backward", "optimizer", "communication", "data", "other")
FORWARD, BACKWARD, OPTIMIZER, COMMUNICATION, DATA, OTHER = range(6)
UNSET = -1

# Checked in this order; the first that matches a name decides.
_RULES = [
    (COMMUNICATION, re.compile(r"nccl|rccl|c10d::|record_param_comms|gloo|all_?reduce|all_?gather|"
                               r"reduce_?scatter|broadcast_(?!tensors|to|shape|arrays)|alltoall|ProcessGroup", re.I)),
    (OPTIMIZER, re.compile(r"^Optimizer\.|optimizer|_fused_adam|_fused_sgd|_foreach_|zero_grad", re.I)),
    (BACKWARD, re.compile(r"autograd::engine|Backward\d*$|backward", re.I)),
    (DATA, re.compile(r"DataLoader|dataloader|_next_data|data_load|## data|collate", re.I)),
    (FORWARD, re.compile(r"forward|^nn\.Module:", re.I)),
]


def phase_of_names(names: list[str]) -> np.ndarray:
    """Phase code per name (UNSET where the name says nothing)."""
    out = np.full(len(names), UNSET, np.int8)
    for i, name in enumerate(names):
        name = name[:CLASSIFY_CHARS]
        for phase, rx in _RULES:
            if rx.search(name):
                out[i] = phase
                break
    return out


COMM_KERNEL = re.compile(r"nccl|rccl|AllReduce|AllGather|ReduceScatter|SendRecv|Broadcast", re.I)
