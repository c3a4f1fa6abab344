"""A two-stage detector in the spirit of Faster R-CNN (Ren et al. 2015) with the ResNet C4 layout
of Detectron: ResNet stages 1-3 as backbone (stride 16), a region proposal network over 9 anchors
per position, RoIAlign (bilinear sampling via grid_sample), ResNet stage 4 as the box head, and
per-class box regression. Written without torchvision; top-k proposals stand in for NMS."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tbd_suite.cnn import resnet_stage
from tbd_suite.common import Workload, make_optimizer, run_blocks
from tbd_suite.samplers import Detection


def box_iou(a, b):
    area = lambda x: (x[:, 2] - x[:, 0]).clamp(min=0) * (x[:, 3] - x[:, 1]).clamp(min=0)  # noqa: E731
    lt, rb = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area(a)[:, None] + area(b)[None] - inter).clamp(min=1e-6)


def encode(ref, boxes, weights):
    """Box regression targets (dx, dy, dw, dh) of `boxes` relative to `ref` (Ren et al., eq. 2)."""
    wr, hr = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    wb, hb = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    dx = ((boxes[:, 0] + wb / 2) - (ref[:, 0] + wr / 2)) / wr
    dy = ((boxes[:, 1] + hb / 2) - (ref[:, 1] + hr / 2)) / hr
    d = torch.stack([dx, dy, torch.log(wb / wr), torch.log(hb / hr)], 1)
    return d * d.new_tensor(weights)


def decode(ref, deltas, weights, size):
    d = deltas / deltas.new_tensor(weights)
    wr, hr = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    cx, cy = ref[:, 0] + wr / 2 + d[:, 0] * wr, ref[:, 1] + hr / 2 + d[:, 1] * hr
    w, h = wr * d[:, 2].clamp(max=4.0).exp(), hr * d[:, 3].clamp(max=4.0).exp()
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clamp(0, size)


def sample_labels(iou_max, pos_thresh, neg_thresh, count, pos_fraction, gen):
    """Label 1 / 0 / -1 (ignored) by best IoU, then keep at most `count` with `pos_fraction` positive,
    choosing at random (scores from `gen`)."""
    labels = torch.full_like(iou_max, -1, dtype=torch.long)
    labels[iou_max < neg_thresh] = 0
    labels[iou_max >= pos_thresh] = 1
    score = torch.rand(iou_max.shape, generator=gen).to(iou_max.device)
    for value, quota in ((1, int(count * pos_fraction)), (0, None)):
        idx = torch.nonzero(labels == value).flatten()
        quota = count - int((labels == 1).sum()) if quota is None else quota
        if idx.numel() > quota:
            drop = idx[score[idx].argsort()[quota:]]
            labels[drop] = -1
    return labels


class FasterRCNN(nn.Module):
    def __init__(self, width, classes, image, rpn_batch, roi_batch, proposals, blocks=(3, 4, 6, 3), pool=7):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.backbone = nn.ModuleList(resnet_stage(width, width, blocks[0], 1)
                                      + resnet_stage(4 * width, 2 * width, blocks[1], 2)
                                      + resnet_stage(8 * width, 4 * width, blocks[2], 2))
        c4 = 16 * width
        self.anchors_per_cell = 9
        self.rpn_conv = nn.Conv2d(c4, c4, 3, padding=1)
        self.rpn_obj = nn.Conv2d(c4, self.anchors_per_cell, 1)
        self.rpn_box = nn.Conv2d(c4, 4 * self.anchors_per_cell, 1)
        self.head = nn.ModuleList(resnet_stage(c4, 8 * width, blocks[3], 2))
        self.cls = nn.Linear(32 * width, classes + 1)
        self.box = nn.Linear(32 * width, 4 * (classes + 1))
        self.stride, self.image, self.pool = 16, image, pool
        self.rpn_batch, self.roi_batch, self.proposals = rpn_batch, roi_batch, proposals
        self.gen = torch.Generator()

    def anchors(self, h, w, device):
        """9 anchors (areas 128^2, 256^2, 512^2 scaled to the image, ratios 1:2, 1:1, 2:1) per cell."""
        scales = torch.tensor([0.125, 0.25, 0.5], device=device) * self.image * 1.0
        ratios = torch.tensor([0.5, 1.0, 2.0], device=device)
        ws = (scales[:, None] / ratios.sqrt()[None]).flatten()
        hs = (scales[:, None] * ratios.sqrt()[None]).flatten()
        base = torch.stack([-ws, -hs, ws, hs], 1) / 2
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        centers = (torch.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4) + 0.5) * self.stride
        return (centers + base[None]).reshape(-1, 4)

    def roi_align(self, features, rois, index):
        """Average of 2x2 bilinear samples per output bin (RoIAlign, He et al. 2017)."""
        n, s = rois.shape[0], 2 * self.pool
        steps = (torch.arange(s, device=rois.device) + 0.5) / s
        x = rois[:, 0:1] + (rois[:, 2:3] - rois[:, 0:1]) * steps
        y = rois[:, 1:2] + (rois[:, 3:4] - rois[:, 1:2]) * steps
        h, w = features.shape[-2:]
        gx = (x / (w * self.stride)) * 2 - 1
        gy = (y / (h * self.stride)) * 2 - 1
        grid = torch.stack([gx[:, None, :].expand(n, s, s), gy[:, :, None].expand(n, s, s)], -1)
        out = []
        for i in range(features.shape[0]):
            mine = index == i
            g = grid[mine].reshape(1, -1, s, 2)
            sampled = F.grid_sample(features[i:i + 1], g.to(features.dtype), align_corners=False)
            out.append(sampled.reshape(features.shape[1], -1, s, s).transpose(0, 1))
        return F.avg_pool2d(torch.cat(out), 2)

    def forward(self, images, gt_boxes, gt_labels):
        b = images.shape[0]
        feats = run_blocks(self.backbone, self.stem(images), self.checkpointing)
        h, w = feats.shape[-2:]
        t = F.relu(self.rpn_conv(feats))
        obj = self.rpn_obj(t).permute(0, 2, 3, 1).reshape(b, -1)
        deltas = self.rpn_box(t).view(b, self.anchors_per_cell, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)
        anchors = self.anchors(h, w, images.device)

        rpn_cls, rpn_reg, rois, roi_index, roi_labels, roi_targets = [], [], [], [], [], []
        for i in range(b):
            gt = gt_boxes[i]
            iou = box_iou(anchors, gt)
            best, match = iou.max(1)
            best[iou.argmax(0)] = 1.0  # each ground-truth box gets its best anchor
            labels = sample_labels(best, 0.7, 0.3, self.rpn_batch, 0.5, self.gen)
            keep = labels >= 0
            rpn_cls.append(F.binary_cross_entropy_with_logits(obj[i, keep].float(), labels[keep].float(),
                                                              reduction="sum"))
            pos = labels == 1
            target = encode(anchors[pos], gt[match[pos]], (1, 1, 1, 1))
            rpn_reg.append(F.smooth_l1_loss(deltas[i, pos].float(), target, beta=1 / 9, reduction="sum"))
            # proposals: decoded top-scoring anchors (no gradient), plus the ground truth
            with torch.no_grad():
                top = obj[i].topk(min(self.proposals, obj.shape[1])).indices
                props = torch.cat([decode(anchors[top], deltas[i, top].float(), (1, 1, 1, 1), self.image), gt])
                piou = box_iou(props, gt)
                pbest, pmatch = piou.max(1)
                plabels = sample_labels(pbest, 0.5, 0.5, self.roi_batch, 0.25, self.gen)
                chosen = plabels >= 0
                cls_target = torch.where(plabels[chosen] == 1, gt_labels[i][pmatch[chosen]], 0)
                rois.append(props[chosen])
                roi_index.append(torch.full((int(chosen.sum()),), i, device=images.device))
                roi_labels.append(cls_target)
                roi_targets.append(encode(props[chosen], gt[pmatch[chosen]], (10, 10, 5, 5)))
        rois, roi_index = torch.cat(rois), torch.cat(roi_index)
        roi_labels, roi_targets = torch.cat(roi_labels), torch.cat(roi_targets)

        x = run_blocks(self.head, self.roi_align(feats, rois, roi_index), self.checkpointing)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        cls_logits, box_deltas = self.cls(x), self.box(x).view(x.shape[0], -1, 4)
        fg = roi_labels > 0
        picked = box_deltas[fg, roi_labels[fg]]
        n_rpn, n_roi = b * self.rpn_batch, max(rois.shape[0], 1)
        return (torch.stack(rpn_cls).sum() / n_rpn + torch.stack(rpn_reg).sum() / n_rpn
                + F.cross_entropy(cls_logits.float(), roi_labels)
                + F.smooth_l1_loss(picked.float(), roi_targets[fg], beta=1.0, reduction="sum") / n_roi)


class DetectionWorkload(Workload):
    name = "detection"
    paper = ("Ren et al., Faster R-CNN, NeurIPS 2015, with the ResNet-50 C4 backbone and head of "
             "Detectron (RoIAlign from He et al., Mask R-CNN, 2017)")
    optimizer_name = "SGD, momentum 0.9, weight decay 1e-4, lr 0.02"
    loss_name = "RPN objectness BCE + RPN smooth-L1 + box classifier cross-entropy + per-class smooth-L1"
    sizes = {
        "small": dict(blocks=(1, 1, 1, 1), width=8, image=64, boxes=3, classes=5, rpn_batch=64, roi_batch=32, proposals=64, batch=2),
        "paper": dict(blocks=(3, 4, 6, 3), width=64, image=800, boxes=8, classes=80, rpn_batch=256, roi_batch=512, proposals=2000,
                      batch=2),
    }

    def make_model(self, cfg):
        model = FasterRCNN(cfg["width"], cfg["classes"], cfg["image"], cfg["rpn_batch"], cfg["roi_batch"],
                           cfg["proposals"], cfg["blocks"])
        model.gen.manual_seed(self.settings.seed)
        return model

    def make_sampler(self, cfg):
        return Detection(cfg["image"], cfg["boxes"], cfg["classes"])

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.SGD, params, fused, lr=0.02, momentum=0.9, weight_decay=1e-4)

    def compute_loss(self, batch):
        return self.model(*batch)

