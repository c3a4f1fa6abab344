"""My own job: a 2-layer LSTM language model on random tokens, SGD with momentum, gradient clipping,
a step LR scheduler, tied embeddings."""
import sys
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0); torch.set_num_threads(1)

class LM(nn.Module):
    def __init__(self, vocab=2000, d=128):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.rnn = nn.LSTM(d, d, num_layers=2, batch_first=True, dropout=0.1)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(d, vocab)
        self.out.weight = self.emb.weight
    def forward(self, x):
        h, _ = self.rnn(self.drop(self.emb(x)))
        return self.out(self.drop(h))

model = LM()
opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
data = torch.randint(0, 2000, (64, 8, 33))
for i in range(60):
    batch = data[i % 64]
    x, y = batch[:, :-1], batch[:, 1:]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled="--amp" in sys.argv):
        loss = F.cross_entropy(model(x).reshape(-1, 2000), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    opt.step()
    sched.step()
