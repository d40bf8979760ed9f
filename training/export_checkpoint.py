"""Export a sharded training checkpoint to one `model.safetensors` that `from_pretrained` loads.

The training scripts save every checkpoint (`checkpoint-<step>/`) with `torch.distributed.checkpoint`: each process
writes its shards of the model and optimizer under `sharded/`, whatever the world size and whether FSDP or DDP ran.
This gathers the model's shards in one process (no GPU, no process group) and writes `config.json` +
`model.safetensors`:

    python training/export_checkpoint.py runs/4m-b/checkpoint-20000 exported/4m-b

The model class is the one the checkpoint's config names (`architectures`), e.g. `FourMForMaskedModeling`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import fourm_hf
from fourm_hf.distributed import export_checkpoint


def model_class_of(checkpoint: Path) -> type:
    """The fourm_hf class named first in the checkpoint's `config.json` `architectures`."""
    config_file = checkpoint / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{checkpoint} has no config.json; give a checkpoint-<step> directory.")
    names = json.loads(config_file.read_text()).get("architectures") or []
    model_class = getattr(fourm_hf, names[0], None) if names else None
    if model_class is None:
        raise ValueError(f"{config_file} names architectures {names}; expected a fourm_hf model class.")
    return model_class


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="checkpoint-<step> directory of a training run")
    parser.add_argument("output_dir", type=Path, help="where config.json and model.safetensors are written")
    args = parser.parse_args(argv)
    model = export_checkpoint(args.checkpoint, args.output_dir, model_class_of(args.checkpoint))
    print(f"Exported {type(model).__name__} ({model.num_parameters():,} parameters) to {args.output_dir}.")


if __name__ == "__main__":
    main()
