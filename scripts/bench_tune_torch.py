#!/usr/bin/env python3
"""One prompt-tuning step of the full-size SegGPT (random weights) with PyTorch autograd on the CPU:
forward with a learnable prompt pair, SegGptLoss, backward to both prompt tensors, one AdamW step.
Prints the time of each step and the process's peak resident memory, to set beside
`cargo test --release --test tune_bench -- --ignored --nocapture` (docs/MODEL.md §16).

    FIXTURE_THREADS=2 .venv-ref/bin/python scripts/bench_tune_torch.py [--steps 2] [--batch 1]
"""

import argparse
import os
import resource
import time

import torch
from transformers import SegGptConfig, SegGptForImageSegmentation


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2, help="steps to time (the first includes warm-up)")
    ap.add_argument("--batch", type=int, default=1, help="training pairs per step")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("FIXTURE_THREADS", str(os.cpu_count()))))
    torch.manual_seed(0)
    model = SegGptForImageSegmentation(SegGptConfig()).float().eval()
    model.requires_grad_(False)  # frozen: no gradient buffers for the 370 M parameters
    h, w = model.config.image_size[0] // 2, model.config.image_size[1]
    n = model.model.embeddings.patch_embeddings.num_patches
    masked = torch.cat([torch.zeros(n // 2, dtype=torch.bool), torch.ones(n - n // 2, dtype=torch.bool)])
    masked = masked[None].expand(args.batch, -1)
    prompt = torch.randn(1, 3, h, w).requires_grad_(True)
    prompt_mask = torch.randn(1, 3, h, w).requires_grad_(True)
    queries = torch.randn(args.batch, 3, h, w)
    labels = torch.randn(args.batch, 3, h, w)
    opt = torch.optim.AdamW([prompt, prompt_mask], lr=0.05)
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        opt.zero_grad()
        out = model(pixel_values=queries, prompt_pixel_values=prompt.expand(args.batch, -1, -1, -1),
                    prompt_masks=prompt_mask.expand(args.batch, -1, -1, -1), labels=labels,
                    bool_masked_pos=masked, feature_ensemble=False)
        out.loss.backward()
        opt.step()
        secs = time.perf_counter() - start
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"torch step {step}: {secs:.2f} s, loss {out.loss.item():.4f}, peak RSS so far {peak_gib:.2f} GiB "
              f"(threads {torch.get_num_threads()}, batch {args.batch}, load average {os.getloadavg()})")


if __name__ == "__main__":
    main()
