#!/usr/bin/env python
"""Train the shapes feature network (``evaluation.shapes_net``) on the labels the shapes generator knows.

    python scripts/train_features.py --out runs/shapes_features --threads 1
    python scripts/train_features.py --out runs/shapes_features --export evaluation/shapes_features32

Targets per image (``imaging.shapes.render_shapes_labelled``): background texture, number of shapes, kind and hue
of the top shape, which kinds and which hues occur. Loss: the sum of the heads' cross-entropies. Held-out accuracy
is measured on images of the ``test`` split far from the ones restorations use (indices from 500 000), never
trained on. Deterministic given --seed: initial weights, batch order and flips come from explicit generators.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from evaluation.shapes_net import (
    HEADS,
    MODEL_CONFIG,
    ShapesNet,
    head_accuracy,
    head_loss,
    labelled_shapes,
    save_shapes_net,
)
from priors.training import seeded_init

HELDOUT_START = 500_000  # test split: far from the first images runs restore
CHECK_IMAGES = 512  # the first held-out images, whose accuracy tests/evaluation reproduces exactly


def cached_set(split: str, start: int, n: int, cache: Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``labelled_shapes`` cached as .npz (images as uint8, as PNGs store them)."""
    if cache.exists():
        data = np.load(cache)
        images = torch.from_numpy(data["images"]).float() / 127.5 - 1
        return images, {k: torch.from_numpy(data[k]) for k in HEADS}
    images, targets = labelled_shapes(split, start, n, MODEL_CONFIG["image_size"])
    images8 = ((images + 1) * 127.5).round().clamp(0, 255).byte()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, images=images8.numpy(), **{k: v.numpy() for k, v in targets.items()})
    return images8.float() / 127.5 - 1, targets


@torch.no_grad()
def evaluate(model: ShapesNet, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, float]:
    model.eval()
    logits = {k: [] for k in HEADS}
    for i in range(0, len(images), 256):
        for k, v in model(images[i : i + 256]).items():
            logits[k].append(v)
    model.train()
    return head_accuracy({k: torch.cat(v) for k, v in logits.items()}, targets)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run folder (data cache, checkpoint, log)")
    parser.add_argument("--num-images", type=int, default=40_000, help="training images (train split)")
    parser.add_argument("--heldout-images", type=int, default=4096, help="held-out images (test split)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--export", type=Path, help="write the trained weights (safetensors) + meta (json) and exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint = args.out / "model.pt"

    heldout = cached_set("test", HELDOUT_START, args.heldout_images, args.out / "heldout.npz")
    if args.export:
        model = ShapesNet(**MODEL_CONFIG)
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        # the check set is rendered fresh (float images, not the uint8 cache), as the test renders it
        check = labelled_shapes("test", HELDOUT_START, CHECK_IMAGES, MODEL_CONFIG["image_size"])
        meta = {
            "model": MODEL_CONFIG,
            "heads": {k: list(v) for k, v in HEADS.items()},
            "feature_dim": model.feature_dim,
            "train": state["train"],
            "heldout": {
                "split": "test",
                "start": HELDOUT_START,
                "images": args.heldout_images,
                "accuracy": evaluate(model, *heldout),
            },
            "check": {
                "split": "test",
                "start": HELDOUT_START,
                "images": CHECK_IMAGES,
                "accuracy": evaluate(model, *check),
            },
        }
        save_shapes_net(model, args.export.with_suffix(".safetensors"), meta)
        print(json.dumps(meta["heldout"], indent=2))
        print(f"exported to {args.export.with_suffix('.safetensors')}")
        return

    train_images, train_targets = cached_set("train", 0, args.num_images, args.out / "train.npz")
    model = seeded_init(lambda: ShapesNet(**MODEL_CONFIG), args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed + 1)
    steps_per_epoch = args.num_images // args.batch_size
    total = steps_per_epoch * args.epochs
    warmup = min(200, total // 10)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay to 0
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return 0.5 * args.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    log = (args.out / "log.csv").open("w")
    log.write("step,epoch,loss,seconds\n")
    start, step = time.time(), 0
    for epoch in range(args.epochs):
        order = torch.randperm(args.num_images, generator=generator)
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            x = train_images[idx]
            flips = torch.rand(len(idx), generator=generator) < 0.5  # a mirror image has the same labels
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            loss = head_loss(model(x), {k: v[idx] for k, v in train_targets.items()})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 50 == 0:
                log.write(f"{step},{epoch},{loss.item():.5f},{time.time() - start:.1f}\n")
                log.flush()
        accuracy = evaluate(model, *heldout)
        print(
            f"epoch {epoch + 1}/{args.epochs} step {step} loss {loss.item():.4f} {time.time() - start:.0f}s "
            + " ".join(f"{k} {v:.3f}" for k, v in accuracy.items()),
            flush=True,
        )
    train = {
        "steps": step,
        "epochs": args.epochs,
        "num_images": args.num_images,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "seconds": round(time.time() - start),
        "threads": args.threads,
        "command": (
            f"python scripts/train_features.py --out {args.out} --num-images {args.num_images} --epochs {args.epochs} "
            f"--batch-size {args.batch_size} --lr {args.lr} --weight-decay {args.weight_decay} --seed {args.seed} "
            f"--threads {args.threads}"
        ),
    }
    torch.save({"model": model.state_dict(), "train": train}, checkpoint)
    print(f"saved {checkpoint}")


if __name__ == "__main__":
    main()
