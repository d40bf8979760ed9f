"""Bad checkpoints and paths through every loader: the configs' and models' `from_pretrained`, the Auto classes,
`load_vq_model`, and the converter scripts' arguments. Each case checks the exception type and that the message
names the file or argument."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_DECODER, TINY_FOURM, TINY_VIT, imported_script
from transformers import AutoConfig, AutoModel

from fourm_hf import (
    FourMConfig,
    FourMDiVAE,
    FourMEncoderModel,
    FourMForDepthEstimation,
    FourMForImageClassification,
    FourMForMaskedModeling,
    FourMForSemanticSegmentation,
    FourMVQVAE,
    FourMVQVAEConfig,
    load_vq_model,
)
from fourm_hf.conversion.official_vq import config_from_official

ROOT = Path(__file__).resolve().parents[1]
TINY_VQ = {**TINY_VIT, **TINY_DECODER}
FOURM_LOADERS = {
    "FourMConfig": FourMConfig.from_pretrained,
    "FourMForMaskedModeling": FourMForMaskedModeling.from_pretrained,
    "FourMEncoderModel": FourMEncoderModel.from_pretrained,
    "FourMForImageClassification": FourMForImageClassification.from_pretrained,
    "FourMForSemanticSegmentation": FourMForSemanticSegmentation.from_pretrained,
    "FourMForDepthEstimation": FourMForDepthEstimation.from_pretrained,
    "AutoModel": AutoModel.from_pretrained,
}
VQ_LOADERS = {
    "FourMVQVAEConfig": FourMVQVAEConfig.from_pretrained,
    "FourMVQVAE": FourMVQVAE.from_pretrained,
    "load_vq_model": load_vq_model,
}
MODEL_LOADERS = {k: v for k, v in {**FOURM_LOADERS, **VQ_LOADERS}.items() if "Config" not in k}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    FourMForMaskedModeling(FourMConfig(**TINY_FOURM)).save_pretrained(root / "fourm")
    FourMVQVAE(FourMVQVAEConfig(**TINY_VQ)).save_pretrained(root / "vq")
    return {"fourm": root / "fourm", "vq": root / "vq"}


def broken_copy(source: Path, destination: Path, name: str, content: bytes | None) -> Path:
    """A copy of the checkpoint `source` whose file `name` holds `content` (or is removed when None)."""
    shutil.copytree(source, destination)
    if content is None:
        (destination / name).unlink()
    else:
        (destination / name).write_bytes(content)
    return destination


# ----------------------------------------------------------------------------------------------------------------
# Where the checkpoint is


@pytest.mark.parametrize("loader", {**FOURM_LOADERS, **VQ_LOADERS})
def test_missing_directory(loader, tmp_path):
    load = {**FOURM_LOADERS, **VQ_LOADERS}[loader]
    if loader == "AutoModel":  # AutoConfig (transformers) answers first, naming the path
        with pytest.raises(OSError, match=str(tmp_path / "nope")):
            load(tmp_path / "nope")
        return
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path / 'nope'))}'?: no such file or directory"):
        load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        load(str(tmp_path / "nope"))


@pytest.mark.parametrize("loader", FOURM_LOADERS)
def test_directory_without_config(loader, tmp_path):
    # AutoConfig (transformers) answers first for AutoModel
    error, message = (ValueError, "Unrecognized model in") if loader == "AutoModel" else (FileNotFoundError, "")
    with pytest.raises(error, match=f"{message}.*{re.escape(str(tmp_path))}( holds no config.json)?"):
        FOURM_LOADERS[loader](tmp_path)


def test_directory_without_config_for_vq_loaders(tmp_path):
    for load in VQ_LOADERS.values():
        with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path))}'? holds no config.json"):
            load(tmp_path)


@pytest.mark.parametrize("loader", MODEL_LOADERS)
def test_a_file_is_not_a_checkpoint_directory(loader, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    message = r"notes\.txt" if loader == "AutoModel" else r"notes\.txt is a file; pass the checkpoint directory"
    with pytest.raises(OSError, match=message):
        MODEL_LOADERS[loader](tmp_path / "notes.txt")


@pytest.mark.parametrize("source", [3, None, 2.5, ["a/b"]])
def test_source_of_the_wrong_type(source):
    for load in (FourMForMaskedModeling.from_pretrained, FourMVQVAE.from_pretrained, FourMConfig.from_pretrained):
        with pytest.raises(
            TypeError, match=f"must be a local path or a Hub repo id \\(str\\), got {type(source).__name__}"
        ):
            load(source)
    if source is not None:
        with pytest.raises(TypeError, match="name_or_path must be a local path or a Hub repo id"):
            load_vq_model(source)


def test_a_string_that_is_neither_path_nor_repo_id():
    with pytest.raises(FileNotFoundError, match=r"'not a repo!!': no such file or directory \(and not a Hub repo id"):
        FourMForMaskedModeling.from_pretrained("not a repo!!")
    with pytest.raises(FileNotFoundError, match=r"'missing\.safetensors': no such file"):
        FourMVQVAE.from_pretrained("missing.safetensors")


def test_config_classes_refuse_a_config_of_another_model_type(checkpoints, tmp_path):
    with pytest.raises(ValueError, match=r"holds a config of model_type 'fourm_vqvae', not 'fourm' \(FourMConfig\)"):
        FourMConfig.from_pretrained(checkpoints["vq"])
    with pytest.raises(ValueError, match=r"holds a config of model_type 'fourm', not 'fourm_vqvae'"):
        FourMVQVAEConfig.from_pretrained(checkpoints["fourm"])
    (tmp_path / "config.json").write_text(json.dumps({"domains_in": ["rgb@224"], "dim": 768}))
    with pytest.raises(ValueError, match=r"config\.json has no model_type \(an official apple/ml-4m config\?\)"):
        FourMConfig.from_pretrained(tmp_path)


def test_load_vq_model_suggests_the_family():
    with pytest.raises(ValueError, match=r"'dpeth' is no family with a released VQ model.*Did you mean 'depth'\?"):
        load_vq_model("dpeth")
    with pytest.raises(ValueError, match=r"'tok_dpeth@224'.*Did you mean 'tok_depth'\?"):
        load_vq_model("tok_dpeth@224")


# ----------------------------------------------------------------------------------------------------------------
# config.json


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"config\.json is not a valid JSON file \(Expecting value.*re-download it"),
        (b'{"model_type": "fourm", "hidden_', r"config\.json is not a valid JSON file"),
        (b"\xff\xfe\x00garbage", r"config\.json is not a valid JSON file"),
        (b"[1, 2]", r"config\.json must hold a JSON object \(a config dict\), got a JSON list"),
    ],
)
def test_broken_config_json(checkpoints, tmp_path, content, message):
    for family, loaders in (("fourm", FOURM_LOADERS), ("vq", VQ_LOADERS)):
        broken = broken_copy(checkpoints[family], tmp_path / family, "config.json", content)
        for name, load in loaders.items():
            if name == "AutoModel":
                continue  # AutoConfig reads the file itself ("... is not a valid JSON file" / "Unrecognized model")
            with pytest.raises(OSError, match=message):
                load(broken)


def test_auto_classes_name_a_broken_config(checkpoints, tmp_path):
    broken = broken_copy(checkpoints["fourm"], tmp_path / "fourm", "config.json", b"{")
    for load in (AutoConfig.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(OSError, match=f"{re.escape(str(broken / 'config.json'))}.* is not a valid JSON file"):
            load(broken)


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("num_encoder_layers", "two", TypeError, r"FourMConfig\.num_encoder_layers must be int, got str 'two'"),
        ("hidden_size", 31.5, TypeError, r"FourMConfig\.hidden_size must be int, got float 31\.5"),
        ("num_attention_heads", -2, ValueError, r"FourMConfig\.num_attention_heads must be >= 1, got -2"),
        ("encoder_modalities", ["rgb@224", "captoin"], ValueError, r"Unknown modality 'captoin'"),
    ],
)
def test_config_json_with_a_bad_field(checkpoints, tmp_path, field, value, error, message):
    directory = shutil.copytree(checkpoints["fourm"], tmp_path / "fourm")
    stored = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**stored, field: value}))
    for load in (*FOURM_LOADERS.values(), AutoConfig.from_pretrained):
        with pytest.raises(error, match=message):
            load(directory)


def test_vq_config_json_with_a_bad_field(checkpoints, tmp_path):
    directory = shutil.copytree(checkpoints["vq"], tmp_path / "vq")
    stored = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**stored, "codebook_size": "big"}))
    for load in (*VQ_LOADERS.values(), AutoModel.from_pretrained):
        with pytest.raises(TypeError, match=r"FourMVQVAEConfig\.codebook_size must be int, got str 'big'"):
            load(directory)


# ----------------------------------------------------------------------------------------------------------------
# Weights


@pytest.mark.parametrize("cut", ["empty", "header", "tail"])
@pytest.mark.parametrize("family", ["fourm", "vq"])
def test_truncated_safetensors(checkpoints, tmp_path, cut, family):
    weights = (checkpoints[family] / "model.safetensors").read_bytes()
    content = {"empty": b"", "header": weights[:100], "tail": weights[:-100]}[cut]
    broken = broken_copy(checkpoints[family], tmp_path / family, "model.safetensors", content)
    loaders = FOURM_LOADERS if family == "fourm" else VQ_LOADERS
    for name, load in loaders.items():
        if "Config" in name:
            continue
        with pytest.raises(
            OSError,
            match=f"{re.escape(str(broken / 'model.safetensors'))} is not a readable safetensors file.*re-download",
        ):
            load(broken)


def test_truncated_shard_is_named(tmp_path):
    torch.manual_seed(0)
    FourMForMaskedModeling(FourMConfig(**TINY_FOURM)).save_pretrained(tmp_path, max_shard_size="20KB")
    shard = sorted(tmp_path.glob("model-*-of-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:50])
    with pytest.raises(OSError, match=f"{re.escape(shard.name)} is not a readable safetensors file"):
        FourMForMaskedModeling.from_pretrained(tmp_path)


@pytest.mark.parametrize("family", ["fourm", "vq"])
def test_missing_weights(checkpoints, tmp_path, family):
    broken = broken_copy(checkpoints[family], tmp_path / family, "model.safetensors", None)
    load = FourMForMaskedModeling.from_pretrained if family == "fourm" else load_vq_model
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(broken))} holds no model.safetensors"):
        load(broken)


@pytest.mark.parametrize("family", ["fourm", "vq"])
def test_pickle_only_checkpoint_is_refused_without_unpickling(checkpoints, tmp_path, family, monkeypatch):
    broken = broken_copy(checkpoints[family], tmp_path / family, "model.safetensors", None)
    torch.save({"weight": torch.zeros(1)}, broken / "pytorch_model.bin")

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called on a pickle checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    loaders = FOURM_LOADERS if family == "fourm" else VQ_LOADERS
    for name, load in loaders.items():
        if "Config" in name:
            continue
        with pytest.raises(
            OSError, match=r"holds only a pickle checkpoint \(pytorch_model\.bin\), which fourm_hf refuses"
        ):
            load(broken)


def test_use_safetensors_false_is_refused(checkpoints):
    with pytest.raises(ValueError, match=r"use_safetensors=False: fourm_hf loads safetensors weights only"):
        FourMForMaskedModeling.from_pretrained(checkpoints["fourm"], use_safetensors=False)


def test_bare_safetensors_that_is_not_one(tmp_path):
    garbage = tmp_path / "tokenizer.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    for load in (load_vq_model, FourMDiVAE.from_pretrained, FourMForMaskedModeling.from_pretrained):
        with pytest.raises(OSError, match=r"tokenizer\.safetensors is not a readable safetensors file"):
            load(garbage)


# ----------------------------------------------------------------------------------------------------------------
# Converter scripts


@pytest.mark.parametrize("script", ["convert_official_checkpoint", "convert_official_vq_model"])
def test_converter_scripts_check_their_arguments(script, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    with imported_script(ROOT / "modeling" / f"{script}.py", script) as module:
        with pytest.raises(SystemExit):
            module.parse_arguments([str(tmp_path / "nope"), str(tmp_path / "out")])
        assert "source=" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            module.parse_arguments(["not a repo!!", str(tmp_path / "out")])
        assert "'not a repo!!': no such file or directory" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            module.parse_arguments([str(tmp_path), str(tmp_path / "file.txt")])
        assert "file.txt' must be a directory to write into, but a file is there" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            module.parse_arguments([str(tmp_path), str(tmp_path / "file.txt" / "sub")])
        assert "its parent" in capsys.readouterr().err
        args = module.parse_arguments([str(tmp_path), str(tmp_path / "out")])
        assert args.destination == tmp_path / "out"


def test_vq_converter_names_an_unknown_family(tmp_path, capsys):
    with imported_script(ROOT / "modeling" / "convert_official_vq_model.py", "convert_official_vq_model") as module:
        with pytest.raises(SystemExit):
            module.parse_arguments(["caption", str(tmp_path / "out")])
    assert "No released VQ model for 'caption'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "official, message",
    [
        (
            {"enc_type": "vit_b_enc", "image_size": "abc"},
            r"Official tokenizer config: image_size must be an integer, got 'abc'",
        ),
        ({"enc_type": "vit_b_enc", "codebook_size": 3.7}, r"codebook_size must be an integer, got 3\.7"),
        ({"enc_type": "vit_x_enc"}, r"Unsupported official encoder type 'vit_x_enc'"),
        ({"quant_type": "fsq"}, r"Unsupported official quantizer 'fsq'"),
    ],
)
def test_official_tokenizer_configs_with_bad_values(official, message):
    with pytest.raises(ValueError, match=message):
        config_from_official(official, {})


def test_official_4m_config_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"An official 4M config is a dict, got list"):
        FourMConfig.from_official_config([1])
    with pytest.raises(ValueError, match=r"Not a 4M config: missing keys \['domains_out'"):
        FourMConfig.from_official_config({"domains_in": ["rgb@224"]})
