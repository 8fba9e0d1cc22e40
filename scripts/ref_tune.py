"""In-context tuning references (`make_fixtures.py tune`): the prompt-tuning loss and its gradients
through transformers' SegGptForImageSegmentation with torch.autograd, and torch.optim.AdamW steps.

Writes to OUT (tests/fixtures/tune):
    inputs.safetensors    prompt_pixel_values, prompt_masks (1,3,H/2,W): the learnable prompt;
                          pixel_values, labels (2,3,H/2,W): two training pairs
    expected.safetensors  for batch b in (1, 2) (the first b pairs):
                          loss.b{b} (1,), grad.prompt_pixel_values.b{b}, grad.prompt_masks.b{b}
    adamw.safetensors     start.{p}, grad{i}.{p} (i = 1..3) and step{i}.{p}: the parameters after
                          step i of torch.optim.AdamW(lr=LR, weight_decay=WD, default betas and eps),
                          for p in (prompt_pixel_values, prompt_masks)
    tune.json             the model directory used, lr, weight decay, tensor shapes

The model is the committed tiny random model `models/tiny-k1` beside OUT (written by `model`/`all`
first). The loss is SegGptLoss with bool_masked_pos given per sample (B, num_patches), the default
masked positions (the query half): with transformers' default (1, num_patches) mask, mask.sum()
counts one sample, so its loss for B pairs is B times the mean, unlike the official forward_loss.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import SegGptForImageSegmentation

LR = 0.05
WEIGHT_DECAY = 0.01
MODEL = "tiny-k1"


def _save(tensors: dict, path: Path):
    save_file({k: v.detach().contiguous().float() for k, v in tensors.items()}, str(path))


def default_masked_pos(model, batch: int) -> torch.Tensor:
    n = model.model.embeddings.patch_embeddings.num_patches
    row = torch.cat([torch.zeros(n // 2, dtype=torch.bool), torch.ones(n - n // 2, dtype=torch.bool)])
    return row[None].expand(batch, -1).contiguous()


def loss_and_grads(model, prompt: torch.Tensor, prompt_mask: torch.Tensor, queries: torch.Tensor,
                   labels: torch.Tensor):
    p = prompt.clone().requires_grad_(True)
    m = prompt_mask.clone().requires_grad_(True)
    b = queries.shape[0]
    out = model(pixel_values=queries, prompt_pixel_values=p.expand(b, -1, -1, -1),
                prompt_masks=m.expand(b, -1, -1, -1), labels=labels, bool_masked_pos=default_masked_pos(model, b),
                feature_ensemble=False, embedding_type="instance")
    out.loss.backward()
    # The same loss written out: smooth-L1 over the query half, mean (checks the mask reading).
    h = queries.shape[2]
    direct = torch.nn.functional.smooth_l1_loss(out.pred_masks[:, :, h:], labels, beta=model.config.beta)
    assert torch.allclose(direct, out.loss, rtol=1e-6), (direct.item(), out.loss.item())
    return out.loss.detach(), p.grad.detach(), m.grad.detach()


def cmd_tune(out: Path, seed: int, log=print):
    out.mkdir(parents=True, exist_ok=True)
    model_dir = out.parent / "models" / MODEL
    model = SegGptForImageSegmentation.from_pretrained(str(model_dir)).float().eval()
    cfg = model.config
    h, w = cfg.image_size[0] // 2, cfg.image_size[1]
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "prompt_pixel_values": torch.randn(1, 3, h, w, generator=g),
        "prompt_masks": torch.randn(1, 3, h, w, generator=g),
        "pixel_values": torch.randn(2, 3, h, w, generator=g),
        "labels": torch.randn(2, 3, h, w, generator=g),
    }
    expected = {}
    for b in (1, 2):
        loss, gp, gm = loss_and_grads(model, inputs["prompt_pixel_values"], inputs["prompt_masks"],
                                      inputs["pixel_values"][:b], inputs["labels"][:b])
        expected[f"loss.b{b}"] = loss.reshape(1)
        expected[f"grad.prompt_pixel_values.b{b}"] = gp
        expected[f"grad.prompt_masks.b{b}"] = gm
        log(f"[tune] batch {b}: loss {loss.item():.6f}, |grad| max {gp.abs().max().item():.3g} / "
            f"{gm.abs().max().item():.3g}")

    # AdamW: three steps from the prompt on fixed gradients (the batch-2 gradient, then two random ones).
    names = ("prompt_pixel_values", "prompt_masks")
    params = [inputs[n].clone().requires_grad_(True) for n in names]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    adamw = {f"start.{n}": inputs[n] for n in names}
    for i in (1, 2, 3):
        for n, p in zip(names, params):
            grad = expected[f"grad.{n}.b2"] if i == 1 else torch.randn(p.shape, generator=g) * 0.1
            p.grad = grad.clone()
            adamw[f"grad{i}.{n}"] = grad
        opt.step()
        for n, p in zip(names, params):
            adamw[f"step{i}.{n}"] = p.detach().clone()

    _save(inputs, out / "inputs.safetensors")
    _save(expected, out / "expected.safetensors")
    _save(adamw, out / "adamw.safetensors")
    info = {"model": f"models/{MODEL}", "seed": seed, "lr": LR, "weight_decay": WEIGHT_DECAY,
            "beta": cfg.beta, "half_canvas": [h, w], "batches": [1, 2]}
    with open(out / "tune.json", "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
