// The package's example: everything below is the package's public API (docs/PACKAGE.md).
// ?model=URL names the weights (default: SegGPT ViT-L on the Hugging Face hub); ?device=, ?dtype= as in load().
import { SegGPT, SegGPTError } from '../seggpt-web/index.js';

const query = new URLSearchParams(location.search);
const status = document.getElementById('status');
const button = document.getElementById('segment');
const picked = (id) => document.getElementById(id).files[0];

try {
  const model = await SegGPT.load({
    model: query.get('model') ?? 'https://huggingface.co/BAAI/seggpt-vit-large/resolve/main/',
    device: query.get('device') ?? 'auto',
    dtype: query.get('dtype') ?? 'auto',
    onProgress: ({ text }) => { status.textContent = text; },
  });
  status.textContent = `ready on ${model.adapter} (${model.dtype})`;
  button.disabled = false;
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.textContent = 'segmenting ...';
    try {
      const [result] = await model.segment({
        prompts: [{ image: picked('prompt-image'), mask: picked('prompt-mask') }],
        targets: [picked('target')],
      });
      const url = URL.createObjectURL(result.maskPng);
      const img = document.getElementById('mask');
      URL.revokeObjectURL(img.src);
      img.src = url;
      img.hidden = false;
      const download = document.getElementById('download');
      download.href = url;
      download.hidden = false;
      status.textContent = `done: ${result.width} x ${result.height} in ${result.seconds.toFixed(2)} s`;
    } catch (error) {
      status.textContent = error instanceof SegGPTError ? `failed: ${error.message}` : `bug: ${error}`;
    } finally {
      button.disabled = false;
    }
  });
} catch (error) {
  status.textContent = `failed: ${error.message}`;
}
