"""Entry point of the multi-process tests, started by `accelerate launch`:

    accelerate launch --num_processes 2 ... tests/distributed_runner.py SCRIPT DUMP_DIR [script arguments]

runs `main(arguments)` of the training script SCRIPT, then every rank writes what it ended with to DUMP_DIR:
`rank<r>.json` (the world size, the masking seeds its collator used, the trainer's log history or the returned
metrics) and, for a returned `Trainer`,
`rank<r>.safetensors` (the model's full state: sharded parameters gathered, buffers as this rank holds them).
"""

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from transformers import Trainer

from conftest import imported_script
from fourm_hf.data.masking import FourMMaskingCollator
from fourm_hf.distributed import end_processes


def record_masking_seeds(seen: list) -> None:
    """Make every `FourMMaskingCollator` call of this process append its samples' masking seeds to `seen`."""
    collate = FourMMaskingCollator.__call__

    def recording(self, features, *args, **kwargs):
        seen.extend([int(part) for part in f["masking_seed"]] for f in features if "masking_seed" in f)
        return collate(self, features, *args, **kwargs)

    FourMMaskingCollator.__call__ = recording


def main() -> None:
    script, dump, argv = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    seen: list[list[int]] = []
    record_masking_seeds(seen)
    with imported_script(script, script.stem) as module:
        result = module.main(argv)
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    dump.mkdir(parents=True, exist_ok=True)
    record = {"world_size": world_size, "masking_seeds": seen}
    if isinstance(result, Trainer):
        record["log_history"] = result.state.log_history
        options = StateDictOptions(full_state_dict=True, cpu_offload=False)
        state = get_model_state_dict(result.model, options=options)
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(dump / f"rank{rank}.safetensors"))
    else:
        record["metrics"] = result
    (dump / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
    # The scripts' own entry points tear their process group down; imported, they leave it to this process. Under
    # load a rank then aborted in the interpreter's shutdown, after its record was written ("terminate called
    # without an active exception", no Python frame on the stack): end the group, then skip that shutdown.
    end_processes()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
