"""Speed of the released tokenizer architectures (random weights) on CPU at 224 x 224: VQ-VAE (semantic segmentation:
class embedding + ViT-B/16 encoder and decoder) encode / decode with SDPA vs eager attention, and the RGB DiVAE
(ViT-B/16 encoder + patched UNet) encode and one UNet evaluation (a decode costs `num_steps` of them).

    python benchmarks/bench_tokenizers.py [--batch 1] [--repeats 3] [--threads N]

Each number is the best of `--repeats` timed runs after one warm-up run, in seconds per call.
"""

import argparse
import json
import time

import torch

from fourm_hf import FourMDiVAE, FourMDiVAEConfig, FourMVQVAE, FourMVQVAEConfig
from fourm_hf.cli import HelpFormatter


def best_time(fn, *args, repeats: int) -> float:
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--batch", type=int, default=1, help="images per call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {"threads": torch.get_num_threads(), "torch": torch.__version__, "batch": args.batch}

    semseg = FourMVQVAEConfig(image_size=448, num_classes=134, num_channels=64, post_mlp=True, codebook_size=4096)
    labels = torch.randint(0, 134, (args.batch, 224, 224))
    for attention in ("sdpa", "eager"):
        model = FourMVQVAE._from_config(semseg, attn_implementation=attention).eval()
        with torch.no_grad():
            ids = model.encode(labels)
            results[f"semseg_encode_{attention}_s"] = best_time(model.encode, labels, repeats=args.repeats)
            results[f"semseg_decode_{attention}_s"] = best_time(model.decode, ids, repeats=args.repeats)

    rgb = FourMDiVAEConfig(image_size=448, codebook_size=16384)
    model = FourMDiVAE(rgb).eval()
    pixels = torch.rand(args.batch, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        latents = model.encode_latents(pixels).quantized_latents
        results["rgb_encode_s"] = best_time(model.encode, pixels, repeats=args.repeats)
        results["rgb_unet_step_s"] = best_time(model.denoise, pixels, 500, latents, repeats=args.repeats)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
