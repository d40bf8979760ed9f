"""Convert an official apple/ml-4m checkpoint to a native fourm_hf checkpoint, with a model card.

    python modeling/convert_official_checkpoint.py SRC DST

SRC: an official Hub-layout directory or repo id (config.json + model.safetensors, e.g. EPFL-VILAB/4M-21_B) or a
bare official .safetensors file. DST: output directory (config.json, model.safetensors, README.md).
"""

import argparse
from collections.abc import Sequence
from pathlib import Path


from fourm_hf import FourMForMaskedModeling
from fourm_hf.cli import HelpFormatter
from fourm_hf.conversion.files import check_destination, check_source
from fourm_hf.conversion.official_fourm import read_official_checkpoint
from fourm_hf.models.model_cards import build_model_card

DESCRIPTION = """
Converted from the official apple/ml-4m checkpoint `{source}`; numerics are identical to the official
implementation.

- Encoder modalities: {inputs}
- Decoder modalities: {targets}
- Width {dim}, {enc} encoder + {dec} decoder layers, {heads} heads
"""


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked: the source exists (or is a repo id) and the destination is not a file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("source", help="official directory, repo id or bare .safetensors file")
    parser.add_argument("destination", type=Path, help="output directory (config.json, model.safetensors, README.md)")
    parser.add_argument(
        "--repo-id", default=None,
        help="Hub repo id you will push the result to, used in the model card's snippet (default: DST as given)",
    )
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
    description = DESCRIPTION.format(
        source=args.source, inputs=", ".join(config.encoder_modalities), targets=", ".join(config.decoder_modalities),
        dim=config.hidden_size, enc=config.num_encoder_layers, dec=config.num_decoder_layers,
        heads=config.num_attention_heads,
    )
    card = build_model_card(
        model, args.repo_id or str(args.destination), derived_from_release=True, description=description,
        tags=["multimodal"],
    )
    card.save(args.destination / "README.md")
    print(f"Wrote {args.destination} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters).")


if __name__ == "__main__":
    main()
