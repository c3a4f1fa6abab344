"""Fine-tune the head of a small CNN on synthetic images with a CPU augmentation pipeline."""
import argparse, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

class Images(Dataset):
    def __init__(self, n=4096, size=64):
        self.n, self.size = n, size
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        img = rng.random((3, self.size + 8, self.size + 8), dtype=np.float32)
        y, x = rng.integers(0, 8, 2)
        img = img[:, y:y + self.size, x:x + self.size]
        if rng.random() < 0.5:
            img = img[:, :, ::-1]
        img = (img - 0.5) / 0.25
        blur = (img[:, 1:-1, 1:-1] * 4 + img[:, :-2, 1:-1] + img[:, 2:, 1:-1] + img[:, 1:-1, :-2] + img[:, 1:-1, 2:]) / 8
        return torch.from_numpy(np.ascontiguousarray(np.pad(blur, ((0, 0), (1, 1), (1, 1))))), int(i % 10)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10))
    def forward(self, x):
        return self.head(self.backbone(x))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--fused", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = Net()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=a.fused or None)  # frozen backbone stays in the groups
    loader = DataLoader(Images(), batch_size=a.batch, shuffle=True, num_workers=a.workers,
                        persistent_workers=a.workers > 0)
    it = iter(loader)
    times = []
    for step in range(a.steps):
        t0 = time.perf_counter()
        x, y = next(it)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    print(f"median step {1e3 * np.median(times[5:]):.2f} ms")

if __name__ == "__main__":
    main()
