"""Convert an official apple/ml-4m modality tokenizer to a native fourm_hf checkpoint, with a model card.

    python modeling/convert_official_vq_model.py SRC DST

SRC: an official Hub-layout directory or repo id (config.json + model.safetensors, e.g.
EPFL-VILAB/4M_tokenizers_semseg_4k_224-448), a bare official .safetensors file, or a preset name from
family with a released VQ model (e.g. "rgb", "tok_depth"). DST: output directory (config.json, model.safetensors,
README.md).
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from fourm_hf import load_vq_model
from fourm_hf.cli import HelpFormatter
from fourm_hf.conversion.files import check_destination, check_source
from fourm_hf.conversion.official_vq import read_official_tokenizer
from fourm_hf.modalities import FAMILIES, vq_model_id

CARD = """---
{card_data}
---

# {name} (fourm_hf)

4M modality tokenizer ({cls}), converted from the official apple/ml-4m checkpoint `{source}` to the native
fourm_hf layout. Encoding and decoding reproduce the official implementation.

- Input channels: {channels}{classes}; codebook: {codebook} codes ({quantizer})
- {layout}

```python
import fourm_hf
from fourm_hf import {cls}
tokenizer = {cls}.from_pretrained("{dst}")
ids = tokenizer.encode(x)
reconstruction = tokenizer.decode(ids)
```

## Licence

The fourm_hf code is Apache-2.0. The released 4M tokenizer weights carry their own licence, set by their authors
(EPFL and Apple): check the licence of the original repository before any use, in particular commercial use.
"""


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked: `source` is a family with a released VQ model (replaced by its Hub id), an
    existing path or a repo id; the destination is not a file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument(
        "source", help="official directory, repo id, bare .safetensors file, or a family with a released VQ model"
    )
    parser.add_argument("destination", type=Path, help="output directory (config.json, model.safetensors, README.md)")
    args = parser.parse_args(argv)
    try:
        if args.source in FAMILIES or f"tok_{args.source}" in FAMILIES:
            args.source = vq_model_id(args.source)
        check_source(args.source, "source")
        check_destination(args.destination)
    except (OSError, TypeError, ValueError) as err:
        parser.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_arguments(argv)
    source = args.source
    if read_official_tokenizer(source) is None:
        raise SystemExit(f"{source} is not an official 4M tokenizer (no official config found).")
    model = load_vq_model(source)
    model.save_pretrained(args.destination)
    config = model.config
    if config.encoder_type == "vit":
        layout = (
            f"ViT encoder, patch size {config.patch_size}; position tables stored for {config.image_size} px and "
            "bicubically resized to the token grid of other resolutions"
        )
    else:
        layout = "bottleneck-MLP encoder on (batch, channels, 1, 1) vectors"
    name = Path(source).parent.name if str(source).endswith(".safetensors") else Path(str(source)).name
    card_data = ModelCardData(library_name="transformers", license="other", tags=["fourm_hf", "4M", "vq-vae"])
    card = ModelCard(
        CARD.format(
            card_data=card_data.to_yaml(), name=name, cls=type(model).__name__, source=source,
            channels=config.num_channels,
            classes=f" (class embedding of {config.num_classes} classes)" if config.num_classes else "",
            codebook=config.codebook_size, quantizer=config.quantizer_type, layout=layout, dst=args.destination,
        )
    )
    card.save(args.destination / "README.md")
    print(f"Wrote {args.destination} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters).")


if __name__ == "__main__":
    main()
