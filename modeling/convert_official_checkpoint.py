"""Convert an official apple/ml-4m checkpoint to a native fourm_hf checkpoint, with a model card.

    python modeling/convert_official_checkpoint.py SRC DST

SRC: an official Hub-layout directory or repo id (config.json + model.safetensors, e.g. EPFL-VILAB/4M-21_B) or a
bare official .safetensors file. DST: output directory (config.json, model.safetensors, README.md).
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from fourm_hf import FourMForMaskedModeling
from fourm_hf.cli import HelpFormatter
from fourm_hf.conversion.files import check_destination, check_source
from fourm_hf.conversion.official_fourm import read_official_checkpoint

CARD = """---
{card_data}
---

# {name} (fourm_hf)

4M any-to-any multimodal masked model, converted from the official apple/ml-4m checkpoint `{source}` to the
native [fourm_hf](https://github.com/) layout. Numerics are identical to the official implementation.

- Encoder modalities: {inputs}
- Decoder modalities: {targets}
- Width {dim}, {enc} encoder + {dec} decoder layers, {heads} heads

```python
import fourm_hf
from fourm_hf import FourMForMaskedModeling
from fourm_hf.cli import HelpFormatter
model = FourMForMaskedModeling.from_pretrained("{dst}")
```

## Licence

The fourm_hf code is Apache-2.0. The released 4M weights carry their own licence, set by their authors
(EPFL and Apple): check the licence of the original model repository before any use, in particular commercial use.
"""


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked: the source exists (or is a repo id) and the destination is not a file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("source", help="official directory, repo id or bare .safetensors file")
    parser.add_argument("destination", type=Path, help="output directory (config.json, model.safetensors, README.md)")
    args = parser.parse_args(argv)
    try:
        check_source(args.source, "source")
        check_destination(args.destination)
    except (OSError, TypeError) as err:
        parser.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_arguments(argv)
    if read_official_checkpoint(args.source) is None:
        raise SystemExit(f"{args.source} is not an official 4M checkpoint (no official config found).")
    model = FourMForMaskedModeling.from_pretrained(args.source)
    model.save_pretrained(args.destination)
    config = model.config
    card_data = ModelCardData(library_name="transformers", license="other", tags=["fourm_hf", "4M", "multimodal"])
    card = ModelCard(
        CARD.format(
            card_data=card_data.to_yaml(), name=Path(str(args.source)).name, source=args.source,
            inputs=", ".join(config.encoder_modalities), targets=", ".join(config.decoder_modalities),
            dim=config.hidden_size, enc=config.num_encoder_layers, dec=config.num_decoder_layers,
            heads=config.num_attention_heads, dst=args.destination,
        )
    )
    card.save(args.destination / "README.md")
    print(f"Wrote {args.destination} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters).")


if __name__ == "__main__":
    main()
