"""A user's script: tiny U-Net segmentation on synthetic images, bf16 autocast, GroupNorm,
ConvTranspose upsampling, a DataLoader worker doing random flips/crops, AdamW + OneCycleLR,
gradient clipping."""
import argparse
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class Shapes(Dataset):
    def __init__(self, n=512, size=72, crop=64):
        self.n, self.size, self.crop = n, size, crop

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        img = torch.rand(3, self.size, self.size, generator=g)
        mask = (img.mean(0) > 0.5).long()
        y, x = torch.randint(0, self.size - self.crop, (2,), generator=g).tolist()
        img, mask = img[:, y:y + self.crop, x:x + self.crop], mask[y:y + self.crop, x:x + self.crop]
        if i % 2:
            img, mask = img.flip(-1), mask.flip(-1)
        img = (img - 0.5) / 0.25
        return img.contiguous(), mask.contiguous()


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class UNet(nn.Module):
    def __init__(self, c=32, classes=2):
        super().__init__()
        self.d1, self.d2, self.d3 = block(3, c), block(c, 2 * c), block(2 * c, 4 * c)
        self.u2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.b2 = block(4 * c, 2 * c)
        self.u1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.b1 = block(2 * c, c)
        self.head = nn.Conv2d(c, classes, 1)

    def forward(self, x):
        x1 = self.d1(x)
        x2 = self.d2(F.max_pool2d(x1, 2))
        x3 = self.d3(F.max_pool2d(x2, 2))
        y = self.b2(torch.cat([self.u2(x3), x2], 1))
        y = self.b1(torch.cat([self.u1(y), x1], 1))
        return self.head(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--amp", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = UNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=10_000)
    loader = DataLoader(Shapes(), batch_size=a.batch, shuffle=True, num_workers=a.workers,
                        persistent_workers=a.workers > 0, drop_last=True)
    step = 0
    while step < a.steps:
        for img, mask in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.amp):
                loss = F.cross_entropy(model(img), mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step >= a.steps:
                break
    print(f"loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
