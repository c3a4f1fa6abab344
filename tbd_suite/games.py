"""Adversarial and reinforcement-learning workloads: WGAN with gradient penalty (Gulrajani et al.
2017) and A3C (Mnih et al. 2016)."""
from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function

from tbd_suite.common import Workload, make_optimizer, run_blocks
from tbd_suite.samplers import Frames, ImageClass


class Generator(nn.Module):
    """DCGAN generator: z -> 4x4 -> ... -> image, transposed convolutions, BatchNorm, ReLU, tanh."""

    def __init__(self, z, base, image):
        super().__init__()
        ups = (image // 4).bit_length() - 1
        self.z, chans = z, [base * 2 ** (ups - 1 - i) for i in range(ups)]
        self.project = nn.Sequential(nn.Linear(z, chans[0] * 16), nn.BatchNorm1d(chans[0] * 16), nn.ReLU(True))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1, bias=False),
                          nn.BatchNorm2d(chans[i + 1]), nn.ReLU(True)) for i in range(ups - 1))
        self.out = nn.ConvTranspose2d(chans[ups - 1], 3, 4, 2, 1)
        self.c0 = chans[0]

    def forward(self, z):
        x = self.project(z).view(z.shape[0], self.c0, 4, 4)
        return torch.tanh(self.out(run_blocks(self.blocks, x, self.checkpointing)))


class Critic(nn.Module):
    """DCGAN discriminator without batch norm (the gradient penalty is per sample, section 4), with
    layer norm instead, and no sigmoid: it outputs a score."""

    def __init__(self, base, image):
        super().__init__()
        downs = (image // 4).bit_length() - 1
        chans = [3] + [base * 2 ** i for i in range(downs)]
        size = image
        blocks = []
        for i in range(downs):
            size //= 2
            blocks.append(nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1),
                                        nn.LayerNorm([chans[i + 1], size, size]), nn.LeakyReLU(0.2)))
        self.blocks = nn.ModuleList(blocks)
        self.score = nn.Linear(chans[-1] * size * size, 1)

    def forward(self, x):
        return self.score(run_blocks(self.blocks, x, self.checkpointing).flatten(1))


class WGANModel(nn.Module):
    def __init__(self, z, base, image):
        super().__init__()
        self.generator, self.critic = Generator(z, base, image), Critic(base, image)

    @property
    def checkpointing(self):
        return self.generator.checkpointing

    @checkpointing.setter
    def checkpointing(self, value):
        self.generator.checkpointing = self.critic.checkpointing = value


class WGAN(Workload):
    name = "wgan"
    paper = "Gulrajani et al., Improved Training of Wasserstein GANs, NeurIPS 2017 (DCGAN architecture, 64x64)"
    optimizer_name = "Adam, lr 1e-4, betas (0, 0.9), for critic and generator; 5 critic steps per generator step"
    loss_name = "Wasserstein critic loss + 10 x gradient penalty; generator -E[D(G(z))]"
    n_critic, penalty = 5, 10.0
    sizes = {
        "small": dict(z=16, base=8, image=16, batch=8),
        "paper": dict(z=128, base=64, image=64, batch=64),
    }

    def make_model(self, cfg):
        return WGANModel(cfg["z"], cfg["base"], cfg["image"])

    def make_sampler(self, cfg):
        return ImageClass(3, cfg["image"], cfg["image"], 1)

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.Adam, params, fused, lr=1e-4, betas=(0.0, 0.9))

    def make_optimizers(self, fused):
        return [self.make_optimizer(self.model.critic.parameters(), fused),
                self.make_optimizer(self.model.generator.parameters(), fused)]

    def gradient_penalty(self, real, fake):
        critic = self.model.critic
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        score = critic(mixed)
        if self.scaler:  # fp16: differentiate the scaled score, unscale the gradient (torch AMP recipe)
            grads, = torch.autograd.grad(self.scaler.scale(score.sum()), mixed, create_graph=True)
            grads = grads / self.scaler.get_scale()
        else:
            grads, = torch.autograd.grad(score.sum(), mixed, create_graph=True)
        return ((grads.flatten(1).float().norm(dim=1) - 1) ** 2).mean()

    def train_step(self):
        g, c = self.model.generator, self.model.critic
        critic_opt, gen_opt = self.optimizers
        z_dim, b = self.cfg["z"], self.settings.batch_size
        for _ in range(self.n_critic):
            real, _ = self.next_batch()
            with self.autocast(), record_function("daydream:forward"):
                with torch.no_grad():
                    fake = g(torch.randn(b, z_dim, device=self.device))
                loss = c(fake).mean() - c(real).mean() + self.penalty * self.gradient_penalty(real, fake)
            self.backward_and_step(loss, critic_opt)
        for p in c.parameters():
            p.requires_grad_(False)
        with self.autocast(), record_function("daydream:forward"):
            gen_loss = -c(g(torch.randn(b, z_dim, device=self.device))).mean()
        self.backward_and_step(gen_loss, gen_opt)
        for p in c.parameters():
            p.requires_grad_(True)
        return loss


class ActorCritic(nn.Module):
    """The Atari network of Mnih et al. (2015) used by A3C: conv 16x8x8/4, conv 32x4x4/2, FC 256,
    softmax policy and linear value heads."""

    def __init__(self, size, actions):
        super().__init__()
        s = ((size - 8) // 4 + 1 - 4) // 2 + 1
        self.features = nn.ModuleList([nn.Sequential(nn.Conv2d(4, 16, 8, 4), nn.ReLU()),
                                       nn.Sequential(nn.Conv2d(16, 32, 4, 2), nn.ReLU()),
                                       nn.Sequential(nn.Flatten(), nn.Linear(32 * s * s, 256), nn.ReLU())])
        self.policy, self.value = nn.Linear(256, actions), nn.Linear(256, 1)

    def forward(self, frames):
        h = run_blocks(self.features, frames, self.checkpointing)
        return self.policy(h), self.value(h).squeeze(-1)


class A3C(Workload):
    name = "a3c"
    paper = "Mnih et al., Asynchronous Methods for Deep Reinforcement Learning, ICML 2016 (feed-forward agent)"
    optimizer_name = "RMSProp, lr 7e-4, alpha 0.99, eps 0.1 (shared statistics in the paper), gradient clipping 40"
    loss_name = "n-step advantage policy gradient + 0.5 x value MSE - 0.01 x entropy"
    clip_norm = 40.0
    gamma, entropy_beta, actions = 0.99, 0.01, 6
    sizes = {
        "small": dict(size=42, steps=5, batch=4),
        "paper": dict(size=84, steps=5, batch=16),
    }

    def make_model(self, cfg):
        return ActorCritic(cfg["size"], self.actions)

    def make_sampler(self, cfg):
        return Frames(cfg["steps"], cfg["size"])

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.RMSprop, params, fused, lr=7e-4, alpha=0.99, eps=0.1)

    def compute_loss(self, batch):
        """A rollout of `steps` frames from `batch` environments: batch size = parallel environments."""
        frames, rewards = batch                     # [B, T+1, 4, S, S], [B, T]
        b, t1 = frames.shape[:2]
        logits, values = self.model(frames.flatten(0, 1))
        logits, values = logits.view(b, t1, -1)[:, :-1].float(), values.view(b, t1).float()
        log_probs = logits.log_softmax(-1)
        actions = torch.multinomial(log_probs.detach().exp().flatten(0, 1), 1).view(b, t1 - 1)
        ret, returns = values[:, -1].detach(), []
        for step in reversed(range(t1 - 1)):
            ret = rewards[:, step] + self.gamma * ret
            returns.append(ret)
        returns = torch.stack(returns[::-1], 1)
        advantage = returns - values[:, :-1]
        chosen = log_probs.gather(-1, actions[..., None]).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return (-(chosen * advantage.detach()).mean() + 0.5 * advantage.pow(2).mean()
                - self.entropy_beta * entropy.mean())
