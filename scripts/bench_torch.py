#!/usr/bin/env python3
"""CPU timing of the transformers SegGPT forward (baseline for seggpt-web).

Default: the released ViT-L configuration (896x448 input, 24 layers, hidden 1024), random weights,
one prompt (K=1), random inputs, float32, eval mode, torch.inference_mode().
1 warm-up run + N timed runs; prints mean / min seconds and the thread count.

    .venv-ref/bin/python scripts/bench_torch.py --runs 3 --threads 4
    .venv-ref/bin/python scripts/bench_torch.py --config '{"hidden_size":32,...}'   # smoke test

Same weights and inputs as `seggpt bench --model DIR --inputs DIR/inputs.safetensors` (scripts/gpu-bench.sh):
    --save-dir DIR   writes DIR/config.json + DIR/model.safetensors (HF) + DIR/inputs.safetensors, then times
    --load-dir DIR   times the model and inputs of DIR instead of random ones
    --device cuda --dtype fp16 --output FILE   (pred_masks written as f32 safetensors)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's default)")
    ap.add_argument("--num-prompts", type=int, default=1, help="K prompts (batch); default 1")
    ap.add_argument("--feature-ensemble", action="store_true", help="pass feature_ensemble=True (HF schedule)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=None, help="JSON string/file of SegGptConfig overrides (default: ViT-L)")
    ap.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="model and input precision")
    ap.add_argument("--save-dir", default=None, help="write the model and inputs here (HF layout)")
    ap.add_argument("--load-dir", default=None, help="time the model and inputs written by --save-dir")
    ap.add_argument("--output", default=None, help="write the last run's pred_masks (f32) to this safetensors file")
    args = ap.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    import transformers
    from transformers import SegGptConfig, SegGptForImageSegmentation

    overrides = {}
    if args.config:
        overrides = json.load(open(args.config)) if os.path.isfile(args.config) else json.loads(args.config)
    cfg = SegGptConfig(**overrides)

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    if args.load_dir:
        model = SegGptForImageSegmentation.from_pretrained(args.load_dir).float().eval()
        cfg = model.config
    else:
        model = SegGptForImageSegmentation(cfg).float().eval()
    t_build = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())

    k = args.num_prompts
    h, w = cfg.image_size[0] // 2, cfg.image_size[1]
    g = torch.Generator().manual_seed(args.seed)
    query = torch.randn(1, 3, h, w, generator=g)
    inputs = dict(
        pixel_values=query.expand(k, -1, -1, -1).contiguous(),
        prompt_pixel_values=torch.randn(k, 3, h, w, generator=g),
        prompt_masks=torch.randn(k, 3, h, w, generator=g),
    )
    from safetensors.torch import load_file, save_file
    if args.save_dir:
        model.save_pretrained(args.save_dir, safe_serialization=True)
        save_file(inputs, os.path.join(args.save_dir, "inputs.safetensors"))
        if args.runs == 0:
            print(f"wrote the model and inputs to {args.save_dir}")
            return
    if args.load_dir:
        inputs = load_file(os.path.join(args.load_dir, "inputs.safetensors"))
        k = inputs["pixel_values"].shape[0]
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[args.dtype]
    model = model.to(device=args.device, dtype=dtype)
    inputs = {name: t.to(device=args.device, dtype=dtype) for name, t in inputs.items()}

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    print(f"cpu: {platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}")
    print(f"threads: {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})")
    print(f"model: image_size={list(cfg.image_size)} hidden={cfg.hidden_size} layers={cfg.num_hidden_layers} "
          f"heads={cfg.num_attention_heads} params={n_params:,} (built in {t_build:.1f}s)")
    print(f"inputs: K={k} x 3 x {h} x {w}, feature_ensemble={args.feature_ensemble}, "
          f"device={args.device}, dtype={args.dtype}")

    times = []
    with torch.inference_mode():
        for i in range(args.runs + 1):
            sync()
            t0 = time.perf_counter()
            out = model(**inputs, feature_ensemble=args.feature_ensemble).pred_masks
            sync()
            dt = time.perf_counter() - t0
            tag = "warm-up" if i == 0 else f"run {i}"
            print(f"  {tag}: {dt:.3f} s")
            if i > 0:
                times.append(dt)
    assert out.shape == (k, 3, cfg.image_size[0], cfg.image_size[1]) and torch.isfinite(out).all()
    if args.output:
        save_file({"pred_masks": out.float().cpu().contiguous()}, args.output)
    if times:
        print(f"mean {sum(times) / len(times):.3f} s, min {min(times):.3f} s over {len(times)} runs "
              f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
