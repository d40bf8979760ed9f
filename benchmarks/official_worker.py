"""The official side of `bench_official.py`: runs inside the Python environment of an apple/ml-4m checkout.

    OFFICIAL_PYTHON benchmarks/official_worker.py --repo ML4M_DIR --workdir DIR (--init | --run) [--threads N]

`--init` builds a random 4M-B-sized official model (`fourm.models.fm.FM`, 4M-7 modalities, seeded) and writes it to
DIR as the released checkpoints are laid out (`config.json` + `model.safetensors`, official key names). `--run`
loads it and times, once each, the workloads whose inputs `bench_official.py` wrote to `DIR/inputs.safetensors`:
the masked-modeling forward, forward + backward, RGB -> caption (greedy, autoregressive) and RGB -> depth (MaskGIT
with guidance). Times go to `DIR/official_times.json`, generated tokens to `DIR/official_tokens.safetensors`.

Imports only torch, numpy, einops, safetensors, tokenizers, huggingface_hub and the model / sampler modules of the
checkout: the packages `fourm.utils` and `fourm.data` are entered without their `__init__` (which pull in the
training and data stack), and torchvision, which those modules import without using it here, is stubbed when absent.
"""

import argparse
import importlib
import json
import random
import sys
import time
import types
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

CONFIG_4M_B = {
    "domains_in": ["rgb@224", "tok_rgb@224", "tok_depth@224", "tok_semseg@224", "tok_normal@224", "tok_clip@224",
                   "caption", "det"],
    "domains_out": ["tok_rgb@224", "tok_depth@224", "tok_semseg@224", "tok_normal@224", "tok_clip@224", "caption",
                    "det"],
    "encoder_depth": 12, "decoder_depth": 12, "dim": 768, "num_heads": 12, "mlp_ratio": 4.0, "qkv_bias": False,
    "proj_bias": False, "mlp_bias": False, "norm_bias": False, "act_layer": "SiLU", "gated_mlp": True, "qk_norm": False,
    "decoder_causal_mask": False, "decoder_sep_mask": True, "num_register_tokens": 0, "use_act_checkpoint": False,
    "share_modality_embeddings": True, "image_size": 224, "patch_size": 16,
}  # fmt: skip


def _package(name: str, path: Path) -> None:
    """Register package `name` at `path` without running its `__init__`."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module


class _Unused:
    def __init__(self, *args, **kwargs):
        pass


def import_official(repo: Path):
    """The official `FM`, `MODALITY_INFO` and the sampler module."""
    sys.path.insert(0, str(repo))
    try:
        importlib.import_module("torchvision.transforms.functional")
    except ImportError:
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
            _package(name, repo)
    _package("fourm.utils", repo / "fourm" / "utils")
    _package("fourm.data", repo / "fourm" / "data")
    transforms = types.ModuleType("fourm.data.modality_transforms")  # data-loading transforms: not used here
    transforms.__getattr__ = lambda name: _Unused
    sys.modules["fourm.data.modality_transforms"] = transforms
    utils = sys.modules["fourm.utils"]
    misc = importlib.import_module("fourm.utils.misc")
    text = importlib.import_module("fourm.utils.tokenizer.text_tokenizer")
    for source, names in ((misc, ("generate_uint15_hash", "to_2tuple")),
                          (text, ("get_sentinel_to_id_mapping", "merge_span_masking"))):  # fmt: skip
        for name in names:
            setattr(utils, name, getattr(source, name))
    fm = importlib.import_module("fourm.models.fm")
    # its forward shuffles `random.sample(dict.items(), n)`, which Python >= 3.11 refuses: sample a list instead
    fm.random = types.SimpleNamespace(sample=lambda population, k: random.sample(list(population), k))
    generate = importlib.import_module("fourm.models.generate")
    info = importlib.import_module("fourm.data.modality_info")
    return fm.FM, info.MODALITY_INFO, generate


def init(repo: Path, workdir: Path) -> None:
    FM, _, _ = import_official(repo)
    torch.manual_seed(0)
    model = FM(CONFIG_4M_B)
    (workdir / "config.json").write_text(json.dumps(CONFIG_4M_B, indent=2))
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}  # shared tensors stored twice
    save_file(tensors, str(workdir / "model.safetensors"), metadata={k: str(v) for k, v in CONFIG_4M_B.items()})


def run(repo: Path, workdir: Path) -> None:
    FM, info, generate = import_official(repo)
    model = FM(json.loads((workdir / "config.json").read_text()))
    model.load_state_dict(load_file(str(workdir / "model.safetensors")))
    model.eval()
    inputs = load_file(str(workdir / "inputs.safetensors"))
    settings = json.loads((workdir / "settings.json").read_text())
    tokenizer = Tokenizer.from_file(str(repo / "fourm" / "utils" / "tokenizer" / "trained" /
                                        "text_tokenizer_4m_wordpiece_30k.json"))  # fmt: skip
    times = {}

    batch = {}
    for key, value in inputs.items():
        if key.startswith("batch."):
            _, name, field = key.split(".", 2)
            batch.setdefault(name, {})[field] = value
    start = time.perf_counter()
    with torch.no_grad():
        model(batch, 128, 128)
    times["forward"] = time.perf_counter() - start
    start = time.perf_counter()
    loss, _ = model(batch, 128, 128)
    loss.backward()
    times["forward_backward"] = time.perf_counter() - start
    model.zero_grad(set_to_none=True)

    sampler = generate.GenerationSampler(model)
    tokens = {}
    for name, target, scheme in (("caption", "caption", "autoregressive"), ("depth", "tok_depth@224", "maskgit")):
        task = settings[name]
        mod_dict = {"rgb@224": {"tensor": inputs["rgb"].clone()}}
        mod_dict = generate.init_full_input_modality(mod_dict, info, "rgb@224", "cpu")
        mod_dict = generate.init_empty_target_modality(mod_dict, info, target, 1, task["num_tokens"], "cpu")
        schedule = generate.build_chained_generation_schedules(
            cond_domains=["rgb@224"], target_domains=[target], tokens_per_target=[task["num_tokens"]],
            autoregression_schemes=[scheme], decoding_steps=[task.get("num_steps")], token_decoding_schedules=["cosine"],
            temps=[task["temperature"]], temp_schedules=["constant"], cfg_scales=[task["guidance_scale"]],
            cfg_schedules=["constant"],
        )  # fmt: skip
        start = time.perf_counter()
        with torch.no_grad():
            out = sampler.generate(mod_dict, schedule, text_tokenizer=tokenizer, seed=0)
        times[name] = time.perf_counter() - start
        tokens[name] = out[target]["tensor"].long().contiguous()
    (workdir / "official_times.json").write_text(json.dumps(times))
    save_file(tokens, str(workdir / "official_tokens.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--repo", type=Path, required=True, help="the apple/ml-4m checkout")
    parser.add_argument("--workdir", type=Path, required=True, help="folder of the shared checkpoint, inputs and results")
    stage = parser.add_mutually_exclusive_group(required=True)
    stage.add_argument("--init", action="store_true", help="write the random 4M-B checkpoint")
    stage.add_argument("--run", action="store_true", help="time the workloads")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    (init if args.init else run)(args.repo.resolve(), args.workdir)


if __name__ == "__main__":
    main()
