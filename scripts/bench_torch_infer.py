#!/usr/bin/env python3
"""The transformers counterpart of `seggpt infer`, for timing the whole process on the CPU.

Loads an HF model folder (config.json + model.safetensors), reads the inputs file `seggpt infer` reads
(pixel_values, prompt_pixel_values, prompt_masks; K from the file), runs one forward pass and writes
`pred_masks` (f32 safetensors). Time the whole command from outside; it also prints its own stages.

    .venv-ref/bin/python scripts/bench_torch_infer.py --model DIR --inputs FILE --output FILE --threads 2
    .venv-ref/bin/python scripts/bench_torch_infer.py --write-inputs FILE --config DIR/config.json

--write-inputs writes a one-prompt inputs file of the model's input size (seeded noise) and exits.
"""

from __future__ import annotations

import argparse
import json
import time

start = time.perf_counter()

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="HF model folder")
    ap.add_argument("--inputs", help="inputs safetensors file, as for `seggpt infer`")
    ap.add_argument("--output", help="where pred_masks is written")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--write-inputs", help="write a one-prompt inputs file here and exit")
    ap.add_argument("--config", help="config.json giving the input size for --write-inputs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.write_inputs:
        h, w = json.load(open(args.config))["image_size"] if args.config else (896, 448)
        g = torch.Generator().manual_seed(args.seed)
        names = ["pixel_values", "prompt_pixel_values", "prompt_masks"]
        save_file({n: torch.randn(1, 3, h // 2, w, generator=g) for n in names}, args.write_inputs)
        print(f"wrote {args.write_inputs}")
        return
    if not (args.model and args.inputs and args.output):
        ap.error("--model, --inputs and --output are needed (or --write-inputs)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from transformers import SegGptForImageSegmentation

    imported = time.perf_counter()
    model = SegGptForImageSegmentation.from_pretrained(args.model).float().eval()
    inputs = load_file(args.inputs)
    loaded = time.perf_counter()
    with torch.inference_mode():
        pred = model(**inputs).pred_masks
    done = time.perf_counter()
    assert torch.isfinite(pred).all(), "non-finite output"
    save_file({"pred_masks": pred.float().contiguous()}, args.output)
    print(
        f"import {imported - start:.1f} s, loaded in {loaded - imported:.1f} s, forward in {done - loaded:.2f} s, "
        f"total {time.perf_counter() - start:.1f} s ({torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
