"""Exports a SegGPT model directory (config.json + model.safetensors, as `make_fixtures.py model` writes) to
ONNX, for timing onnxruntime-web beside the page's CPU path (tests/browser/cpu-vs-ort.mjs; not part of the
test command).

    .venv-ref/bin/python scripts/ort_export.py DIR        -> DIR/model.onnx

The graph is transformers' `SegGptForImageSegmentation` forward with one prompt (inputs `pixel_values`,
`prompt_pixel_values`, `prompt_masks`, each (1, 3, H/2, W); output `pred_masks`), the forward the page's
Benchmark times. The legacy (TorchScript) exporter, opset 17: the one onnxruntime-web's WASM backend runs
without extra operator sets.
"""

import sys
from pathlib import Path

import torch
from transformers import SegGptForImageSegmentation


class OnePrompt(torch.nn.Module):
    """The model's forward with positional inputs and one output, as torch.onnx.export wants."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, prompt_pixel_values, prompt_masks):
        return self.model(pixel_values=pixel_values, prompt_pixel_values=prompt_pixel_values,
                          prompt_masks=prompt_masks).pred_masks


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: ort_export.py MODEL_DIR")
    out = Path(argv[0])
    model = SegGptForImageSegmentation.from_pretrained(str(out)).float().eval()
    h, w = model.config.image_size
    inputs = tuple(torch.rand(1, 3, h // 2, w) for _ in range(3))
    with torch.no_grad():
        torch.onnx.export(OnePrompt(model), inputs, str(out / "model.onnx"), opset_version=17, dynamo=False,
                          input_names=["pixel_values", "prompt_pixel_values", "prompt_masks"],
                          output_names=["pred_masks"])
    print(f"{out / 'model.onnx'}: {(out / 'model.onnx').stat().st_size / 1e6:.1f} MB, inputs (1, 3, {h // 2}, {w})")


if __name__ == "__main__":
    main(sys.argv[1:])
