"""Recurrent models: GNMT-style Seq2Seq (Wu et al. 2016, as in MLPerf's GNMT v2) and Deep Speech 2
(Amodei et al. 2016)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tbd_suite.common import Workload, make_optimizer
from tbd_suite.samplers import Speech, TokenPair


def _maybe_checkpoint(flag, fn, *args):
    if flag and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class _LSTMOut(nn.LSTM):
    """An LSTM layer that returns only its output sequence (so it can be checkpointed as a block).
    Under CPU autocast it runs in fp32: oneDNN in torch 2.13's CPU build has no bf16 LSTM primitive
    ("could not create a primitive descriptor"), so CPU AMP keeps the recurrences in fp32."""

    def forward(self, x):
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())[0]
        return super().forward(x)[0]


class GNMT(nn.Module):
    """Encoder: one bidirectional LSTM, then unidirectional LSTMs with residuals from the third layer.
    Decoder: the first LSTM layer feeds normalized Bahdanau attention over the encoder outputs; the
    attention context is concatenated to the input of every later decoder layer (residuals from the
    third layer), then a softmax projection."""

    def __init__(self, vocab, hidden, layers):
        super().__init__()
        self.src_embed, self.tgt_embed = nn.Embedding(vocab, hidden), nn.Embedding(vocab, hidden)
        self.enc = nn.ModuleList([_LSTMOut(hidden, hidden // 2, batch_first=True, bidirectional=True)]
                                 + [_LSTMOut(hidden, hidden, batch_first=True) for _ in range(layers - 1)])
        self.dec0 = _LSTMOut(hidden, hidden, batch_first=True)
        self.dec = nn.ModuleList(_LSTMOut(2 * hidden, hidden, batch_first=True) for _ in range(layers - 1))
        self.att_q, self.att_k = nn.Linear(hidden, hidden, bias=False), nn.Linear(hidden, hidden, bias=False)
        self.att_v = nn.Parameter(torch.randn(hidden) / hidden ** 0.5)
        self.att_g = nn.Parameter(torch.tensor(1.0 / hidden ** 0.5))
        self.att_b = nn.Parameter(torch.zeros(hidden))
        self.classifier = nn.Linear(hidden, vocab)

    def attend(self, query, keys, values):
        # score(q, k) = g * v/|v| . tanh(Wq q + Wk k + b): normalized Bahdanau attention (GNMT section 3)
        v = self.att_g * self.att_v / self.att_v.norm()
        hidden = torch.tanh(self.att_q(query)[:, :, None] + self.att_k(keys)[:, None] + self.att_b)
        weights = torch.softmax(hidden @ v, dim=-1)
        return weights @ values

    def forward(self, src, tgt_in):
        ck = self.checkpointing
        x = F.dropout(self.src_embed(src), 0.2, self.training)
        for i, layer in enumerate(self.enc):
            y = _maybe_checkpoint(ck, layer, x)
            x = x + y if i >= 2 else y
        memory = x
        h = _maybe_checkpoint(ck, self.dec0, F.dropout(self.tgt_embed(tgt_in), 0.2, self.training))
        context = self.attend(h, memory, memory)
        for i, layer in enumerate(self.dec):
            y = _maybe_checkpoint(ck, layer, torch.cat([F.dropout(h, 0.2, self.training), context], dim=-1))
            h = h + y if i >= 1 else y
        return self.classifier(h)


class Seq2Seq(Workload):
    name = "seq2seq"
    paper = "Wu et al., Google's Neural Machine Translation System, 2016 (MLPerf GNMT v2: 4 layers, 1024 units)"
    optimizer_name = "Adam, lr 2e-3 (MLPerf reference), gradient clipping 5.0"
    loss_name = "cross-entropy with label smoothing 0.1"
    clip_norm = 5.0
    sizes = {
        "small": dict(vocab=512, hidden=64, layers=3, src_len=12, tgt_len=12, batch=8),
        "paper": dict(vocab=32000, hidden=1024, layers=4, src_len=50, tgt_len=50, batch=128),
    }

    def make_model(self, cfg):
        return GNMT(cfg["vocab"], cfg["hidden"], cfg["layers"])

    def make_sampler(self, cfg):
        return TokenPair(cfg["vocab"], cfg["src_len"], cfg["tgt_len"] + 1)

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.Adam, params, fused, lr=2e-3)

    def compute_loss(self, batch):
        src, tgt = batch
        logits = self.model(src, tgt[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1).float(), tgt[:, 1:].flatten(), label_smoothing=0.1,
                               ignore_index=0)


# --- Deep Speech 2 -------------------------------------------------------------------------------------
class SequenceBN(nn.Module):
    """Sequence-wise batch norm before each recurrent layer (DS2 section 3.2)."""

    def __init__(self, dim):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x):
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class BiGRU(nn.Module):
    """BatchNorm then a bidirectional GRU whose two directions are summed."""

    def __init__(self, cin, hidden):
        super().__init__()
        self.norm, self.gru = SequenceBN(cin), nn.GRU(cin, hidden, batch_first=True, bidirectional=True)

    def forward(self, x):
        y, _ = self.gru(self.norm(x))
        return y.view(*y.shape[:2], 2, -1).sum(2)


class DeepSpeech2Model(nn.Module):
    """Two 2-D convolutions over (frequency, time) with clipped ReLU, bidirectional GRUs, a
    fully-connected layer to the characters."""

    def __init__(self, freq, hidden, layers, chars):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, (41, 11), (2, 2), (20, 5), bias=False), nn.BatchNorm2d(32), nn.Hardtanh(0, 20),
            nn.Conv2d(32, 32, (21, 11), (2, 1), (10, 5), bias=False), nn.BatchNorm2d(32), nn.Hardtanh(0, 20))
        f = (freq + 1) // 2
        f = (f + 1) // 2
        self.rnns = nn.ModuleList(BiGRU(32 * f if i == 0 else hidden, hidden) for i in range(layers))
        self.fc = nn.Sequential(SequenceBN(hidden), nn.Linear(hidden, chars, bias=False))

    def forward(self, spec):
        x = self.conv(spec)                       # [B, 32, F', T']
        x = x.flatten(1, 2).transpose(1, 2)       # [B, T', 32 F']
        for rnn in self.rnns:
            x = _maybe_checkpoint(self.checkpointing, rnn, x)
        return self.fc(x)                         # [B, T', chars]


class DeepSpeech2(Workload):
    name = "deepspeech2"
    paper = "Amodei et al., Deep Speech 2, ICML 2016 (2 conv + 5 bidirectional GRU layers of 800 units)"
    optimizer_name = "SGD with Nesterov momentum 0.9, lr 3e-4, gradient clipping 400"
    loss_name = "CTC"
    clip_norm = 400.0
    sizes = {
        "small": dict(freq=33, time=48, hidden=32, layers=2, chars=29, max_label=10, batch=4),
        "paper": dict(freq=161, time=400, hidden=800, layers=5, chars=29, max_label=80, batch=32),
    }

    def make_model(self, cfg):
        return DeepSpeech2Model(cfg["freq"], cfg["hidden"], cfg["layers"], cfg["chars"])

    def make_sampler(self, cfg):
        return Speech(cfg["freq"], cfg["time"], cfg["chars"], cfg["max_label"])

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.SGD, params, fused, lr=3e-4, momentum=0.9, nesterov=True)

    def compute_loss(self, batch):
        spec, labels, lengths = batch
        logits = self.model(spec)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)   # [T, B, C] for ctc_loss
        input_lengths = torch.full((spec.shape[0],), log_probs.shape[0], dtype=torch.long, device=spec.device)
        return F.ctc_loss(log_probs, labels, input_lengths, lengths, blank=0, zero_infinity=True)
