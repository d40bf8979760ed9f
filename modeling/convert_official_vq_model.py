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


from fourm_hf import load_vq_model
from fourm_hf.cli import HelpFormatter
from fourm_hf.conversion.files import check_destination, check_source
from fourm_hf.conversion.official_vq import read_official_tokenizer
from fourm_hf.models.model_cards import build_model_card
from fourm_hf.modalities import FAMILIES, vq_model_id

DESCRIPTION = """
Converted from the official apple/ml-4m modality tokenizer `{source}`; encoding and decoding reproduce the official
implementation.

- Input channels: {channels}{classes}; codebook: {codebook} codes ({quantizer})
- {layout}
"""


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked: `source` is a family with a released VQ model (replaced by its Hub id), an
    existing path or a repo id; the destination is not a file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument(
        "source", help="official directory, repo id, bare .safetensors file, or a family with a released VQ model"
    )
    parser.add_argument("destination", type=Path, help="output directory (config.json, model.safetensors, README.md)")
    parser.add_argument(
        "--repo-id", default=None,
        help="Hub repo id you will push the result to, used in the model card's snippet (default: DST as given)",
    )
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
    description = DESCRIPTION.format(
        source=source, channels=config.num_channels,
        classes=f" (class embedding of {config.num_classes} classes)" if config.num_classes else "",
        codebook=config.codebook_size, quantizer=config.quantizer_type, layout=layout,
    )
    card = build_model_card(
        model, args.repo_id or str(args.destination), derived_from_release=True, description=description,
        tags=["vq-vae"],
    )
    card.save(args.destination / "README.md")
    print(f"Wrote {args.destination} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters).")


if __name__ == "__main__":
    main()
