"""Behaviour of FourMForMaskedModeling on tiny random models: forward contract, losses, errors, save/load."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

import fourm_hf
from fourm_hf import FourMConfig, FourMEncoderModel, FourMForMaskedModeling, get_modality, register_modality
from fourm_hf.models.fourm import modeling_fourm
from fourm_hf.models.fourm.modeling_fourm import FourMDropPath, TokenPacking, default_decoder_attention_mask
from fourm_hf.models.fourm.validation_fourm import _check_entries, check_modalities
from fourm_hf.models.modeling_utils import check_range


def make_batch(config: FourMConfig, batch: int = 2, seed: int = 0) -> dict:
    """A random batch: rgb fully visible, image tokens split into inputs/targets, caption half input half target."""
    g = torch.Generator().manual_seed(seed)
    modalities = {}
    for name in dict.fromkeys(config.encoder_modalities + config.decoder_modalities):
        info = config.modality(name)
        if info.kind == "pixels":
            modalities[name] = {"tensor": torch.randn(batch, 3, info.image_size, info.image_size, generator=g)}
            continue
        length = info.num_tokens if info.is_image else 12
        ids = torch.randint(1, info.vocab_size, (batch, length), generator=g)
        order = torch.rand(batch, length, generator=g).argsort(1)
        input_mask = torch.ones(batch, length, dtype=torch.bool).scatter(1, order[:, : length // 3], False)
        target_mask = torch.ones(batch, length, dtype=torch.bool).scatter(1, order[:, length // 3 : length // 2], False)
        if info.is_sequence:  # contiguous target span after the inputs, as sequence masking produces
            input_mask = torch.arange(length).expand(batch, -1) >= 5
            target_mask = ~((torch.arange(length) >= 5) & (torch.arange(length) < 11)).expand(batch, -1)
        modalities[name] = {"tensor": ids, "input_mask": input_mask, "target_mask": target_mask}
    return modalities


@pytest.fixture
def model(tiny_config):
    return FourMForMaskedModeling(tiny_config).eval()


def test_forward_shapes_and_backward(model, tiny_config):
    batch = make_batch(tiny_config)
    out = model(batch, return_logits=True)
    assert out.encoder_last_hidden_state.shape[-1] == 32
    for name in tiny_config.decoder_modalities:
        targets = int((~batch[name]["target_mask"]).sum())
        if get_modality(name).is_sequence:  # the last target of a span is never an input
            targets -= batch[name]["tensor"].shape[0]
        assert out.logits[name].shape == (targets, get_modality(name).vocab_size)
    model.train()
    model(batch).loss.backward()
    assert model.decoder.mask_token.grad.abs().sum() > 0
    assert model.encoder.embeddings["rgb@224"].proj.weight.grad.abs().sum() > 0


def test_losses_match_cross_entropy_of_returned_logits(model, tiny_config):
    batch = make_batch(tiny_config)
    out = model(batch, return_logits=True)
    per_mod = {n: F.cross_entropy(out.logits[n], out.target_ids[n]) for n in out.logits}
    for name, value in per_mod.items():
        torch.testing.assert_close(out.modality_losses[name], value)
    torch.testing.assert_close(out.loss, sum(per_mod.values()) / len(per_mod))
    token = model(batch, loss_type="token", return_logits=True)
    all_ce = torch.cat([F.cross_entropy(token.logits[n], token.target_ids[n], reduction="none") for n in token.logits])
    torch.testing.assert_close(token.loss, all_ce.mean())


def test_modality_without_targets_counts_as_zero_in_mod_loss(model, tiny_config):
    batch = make_batch(tiny_config)
    batch["caption"]["target_mask"] = torch.ones_like(batch["caption"]["target_mask"])
    out = model(batch)
    assert out.modality_losses["caption"].item() == 0.0
    torch.testing.assert_close(out.loss, out.modality_losses["tok_depth@224"] / 2)


def test_default_decoder_attention_mask_is_the_training_spec(model, tiny_config):
    batch = make_batch(tiny_config)
    mask = batch["tok_depth@224"]["target_mask"]
    spec = default_decoder_attention_mask(get_modality("tok_depth@224"), mask)
    assert spec.sum(1).tolist() == (~mask).sum(1).tolist()
    assert (spec != 0).sum(1).tolist() == [1, 1]  # one entry per sample, at the first target
    explicit = {n: dict(d) for n, d in batch.items()}
    explicit["tok_depth@224"]["decoder_attention_mask"] = spec
    explicit["caption"]["decoder_attention_mask"] = (~batch["caption"]["target_mask"]).long()
    torch.testing.assert_close(model(batch).loss, model(explicit).loss)


def test_encoder_tokens_follow_dict_order(model, tiny_config):
    batch = make_batch(tiny_config)
    caption, depth = batch["caption"], batch["tok_depth@224"]
    first, _, _ = model.encoder.select_tokens({"caption": caption, "tok_depth@224": depth}, None)
    second, _, _ = model.encoder.select_tokens({"tok_depth@224": depth, "caption": caption}, None)
    n_caption = int((~caption["input_mask"][0]).sum())
    n_depth = int((~depth["input_mask"][0]).sum())
    torch.testing.assert_close(first[0, :n_caption], second[0, n_depth : n_depth + n_caption])
    torch.testing.assert_close(first[0, n_caption : n_caption + n_depth], second[0, :n_depth])


def test_sdpa_matches_eager_attention(tiny_config):
    sdpa = FourMForMaskedModeling(copy.deepcopy(tiny_config)).eval()
    eager_config = copy.deepcopy(tiny_config)
    eager_config._attn_implementation = "eager"
    eager = FourMForMaskedModeling(eager_config).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert (sdpa.config._attn_implementation, eager.config._attn_implementation) == ("sdpa", "eager")
    batch = make_batch(tiny_config)
    a, b = sdpa(batch, return_logits=True), eager(batch, return_logits=True)
    for name in a.logits:
        torch.testing.assert_close(a.logits[name], b.logits[name], atol=1e-5, rtol=1e-5)


def test_register_tokens_qk_norm_and_gelu_variant():
    config = FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=2, num_register_tokens=3,
        qk_norm=True, gated_mlp=False, hidden_act="gelu", qkv_bias=True, proj_bias=True, mlp_bias=True,
        norm_bias=True, encoder_modalities=["tok_rgb@224"], decoder_modalities=["tok_rgb@224"],
    )
    model = FourMForMaskedModeling(config).eval()
    batch = make_batch(config)
    out = model(batch)
    visible = int((~batch["tok_rgb@224"]["input_mask"]).sum(1).max())
    assert out.encoder_last_hidden_state.shape[1] == visible + 3
    assert not out.encoder_padding_mask[:, :3].any()
    assert torch.isfinite(out.loss)


def test_truncation_to_num_tokens(model, tiny_config):
    batch = make_batch(tiny_config)
    out = model(batch, num_encoder_tokens=10, num_decoder_tokens=7, return_logits=True)
    assert out.encoder_last_hidden_state.shape[1] == 10
    assert sum(v.shape[0] for v in out.logits.values()) == 2 * 7


def test_padded_decoder_slots_are_skipped_without_changing_results(tiny_config, monkeypatch):
    """Samples with fewer targets leave padding slots, whose token-wise work the decoder skips with
    `skip_padding_slots`: each sample's logits and gradients match running it alone (no padding), and no valid slot
    attends to a padding slot."""
    torch.manual_seed(0)
    model = FourMForMaskedModeling(tiny_config).eval()
    batch = make_batch(tiny_config, batch=3)
    model.config.skip_padding_slots = True
    name = tiny_config.decoder_modalities[0]
    batch[name]["target_mask"][0] = True  # sample 0: no targets of this modality, so padding in its decoder slots
    batch[name]["target_mask"][1, (~batch[name]["target_mask"][1]).nonzero()[0]] = True  # sample 1: one fewer
    targets = sum((~batch[n]["target_mask"]).sum(1) for n in tiny_config.decoder_modalities)
    assert len(set(targets.tolist())) == 3
    packings = []
    monkeypatch.setattr(modeling_fourm, "TokenPacking", lambda valid: packings.append(valid) or TokenPacking(valid))
    out = model(batch, loss_type="token", return_logits=True)
    out.loss.backward()
    packed = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    total = sum(ids.numel() for ids in out.target_ids.values())
    assert len(packings) == 1 and packings[0].sum() == total  # the padded forward packed its targets' slots

    alone_grads, alone_logits = {}, {n: [] for n in out.logits}
    for i in range(3):
        model.zero_grad()
        sample = {n: {k: v[i : i + 1] for k, v in entry.items()} for n, entry in batch.items()}
        single = model(sample, loss_type="token", return_logits=True)
        count = sum(ids.numel() for ids in single.target_ids.values())
        (single.loss * count / total).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                alone_grads[n] = alone_grads.get(n, 0) + p.grad
        for n, logits in single.logits.items():
            alone_logits[n].append(logits)
    assert len(packings) == 1  # samples alone have no padding
    model.config.skip_padding_slots = False  # the default: every slot computed
    torch.testing.assert_close(model(batch, loss_type="token").loss, out.loss, atol=1e-6, rtol=1e-6)
    assert len(packings) == 1
    for n, logits in out.logits.items():
        torch.testing.assert_close(logits, torch.cat(alone_logits[n]), atol=1e-5, rtol=1e-5)
    for n, grad in packed.items():
        torch.testing.assert_close(grad, alone_grads[n], atol=1e-6, rtol=1e-4)


def test_drop_path_draws_per_sample_packed_or_not():
    drop = FourMDropPath(0.5).train()
    x = torch.randn(4, 5, 3)
    valid = torch.rand(4, 5) > 0.3
    packing = TokenPacking(valid)
    torch.manual_seed(1)
    padded = drop(x)
    torch.manual_seed(1)
    torch.testing.assert_close(drop(packing.pack(x), packing), packing.pack(padded), rtol=0, atol=0)
    torch.testing.assert_close(packing.unpack(packing.pack(x)), x * valid[..., None], rtol=0, atol=0)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    """Also with stochastic depth and decoder padding slots (sample 0 has fewer targets), whose forward is re-run."""
    config = copy.deepcopy(tiny_config)
    config.encoder_drop_path_rate = config.decoder_drop_path_rate = 0.2
    config.skip_padding_slots = True
    torch.manual_seed(0)
    model = FourMForMaskedModeling(config).train()
    batch = make_batch(config)
    batch["tok_depth@224"]["target_mask"][0, :100] = True
    torch.manual_seed(1)
    model(batch).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable()
    torch.manual_seed(1)
    model(batch).loss.backward()
    for name, grad in reference.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-6, rtol=1e-5)


def test_save_load_round_trip_is_bit_exact_and_auto_classes_work(model, tiny_config, tmp_path):
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "fourm"
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert type(loaded) is FourMForMaskedModeling
    assert type(AutoModel.from_pretrained(tmp_path)) is FourMEncoderModel
    assert type(AutoConfig.from_pretrained(tmp_path)) is FourMConfig
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    for key in state:
        assert torch.equal(state[key], loaded_state[key]), key
    batch = make_batch(tiny_config)
    assert torch.equal(model(batch).loss, loaded.eval()(batch).loss)
    encoder = FourMEncoderModel.from_pretrained(tmp_path)
    assert torch.equal(encoder.encoder.layers[0].self_attn.qkv.weight, model.encoder.layers[0].self_attn.qkv.weight)
    pixels = batch["rgb@224"]["tensor"]
    assert encoder(pixel_values=pixels).last_hidden_state.shape == (2, 196, 32)


def test_custom_modality_survives_save_load_without_registry(tmp_path):
    register_modality("tok_test@96", "image_tokens", vocab_size=77, image_size=96, patch_size=12, overwrite=True)
    config = FourMConfig(
        hidden_size=16, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=2,
        encoder_modalities=["tok_test@96"], decoder_modalities=["tok_test@96"],
    )
    model = FourMForMaskedModeling(config)
    assert model.encoder.embeddings["tok_test@96"].pos_emb.shape == (64, 16)
    model.save_pretrained(tmp_path)
    del fourm_hf.MODALITIES["tok_test@96"]
    reloaded = FourMForMaskedModeling.from_pretrained(tmp_path)
    assert reloaded.config.modality("tok_test@96").vocab_size == 77
    out = reloaded(make_batch(reloaded.config))
    assert torch.isfinite(out.loss)


# ---------------------------------------------------------------------------------------------------------------
# Errors


def test_unknown_and_unembedded_modalities(model, tiny_config):
    batch = make_batch(tiny_config)
    with pytest.raises(ValueError, match="Unknown modality 'tok_dept@224'"):
        model({**batch, "tok_dept@224": batch["tok_depth@224"]})
    with pytest.raises(ValueError, match="no embedding for modality 'det'"):
        model({**batch, "det": batch["caption"]})


def test_token_ids_outside_vocabulary(model, tiny_config):
    batch = make_batch(tiny_config)
    batch["tok_depth@224"]["tensor"][0, 0] = 8192
    with pytest.raises(ValueError, match=r"tok_depth@224 token ids must lie in \[0, 8192\).*8192"):
        model(batch)


def test_mask_shape_dtype_and_batch_errors(model, tiny_config):
    batch = make_batch(tiny_config)
    bad = {**batch, "caption": {**batch["caption"], "input_mask": batch["caption"]["input_mask"][:, :5]}}
    with pytest.raises(ValueError, match=r"caption: input_mask must have shape .*\(2, 12\).*\(2, 5\)"):
        model(bad)
    bad = {**batch, "tok_depth@224": {"tensor": batch["tok_depth@224"]["tensor"].float()}}
    with pytest.raises(TypeError, match="tok_depth@224 expects integer token ids"):
        model(bad)
    bad = {**batch, "rgb@224": {"tensor": torch.randn(2, 4, 224, 224)}}
    with pytest.raises(ValueError, match=r"rgb@224 expects pixels of shape \(batch, \*\(3, 224, 224\)\)"):
        model(bad)
    bad = {**batch, "rgb@224": {"tensor": torch.randn(3, 3, 224, 224)}}
    with pytest.raises(ValueError, match="same batch size"):
        model(bad)


def test_compiled_forward_matches_and_still_checks_inputs(model, tiny_config):
    """Under torch.compile the input checks run eagerly: none of the graph breaks comes from them, the loss is the
    eager one, and bad input still gets its error."""
    batch = make_batch(tiny_config)
    reference = model(batch).loss
    try:
        explanation = torch._dynamo.explain(model)(batch)
        frames = [frame.filename for reason in explanation.break_reasons for frame in reason.user_stack]
        assert not [f for f in frames if f.endswith(("validation_fourm.py", "modeling_utils.py"))]
        compiled = torch.compile(model, backend="eager")
        assert torch.equal(compiled(batch).loss, reference)
        pixels = batch["rgb@224"]["tensor"].clone()
        pixels[1, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match=r"rgb@224.* holds 1 NaN or infinite value"):
            compiled({**batch, "rgb@224": {"tensor": pixels}})
    finally:
        torch._dynamo.reset()


class HostReads(TorchDispatchMode):
    """Counts the reads of a tensor value into Python (`bool()`, `int()`, `.item()`): on a GPU each one waits for the
    kernels queued before it."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default)
        return func(*args, **(kwargs or {}))


def test_input_checks_read_the_device_once(tiny_config):
    """Finite pixels, ids in range and mask values are checked with one read of the device, not one per check."""
    batch = make_batch(tiny_config)
    for name in tiny_config.decoder_modalities:  # integer masks and attention specs: value checks of their own
        entry = batch[name]
        batch[name] = {**entry, "input_mask": entry["input_mask"].long(),
                       "decoder_attention_mask": (~entry["target_mask"]).long()}  # fmt: skip
    known, decodable = set(tiny_config.encoder_modalities), tiny_config.decoder_modalities
    with HostReads() as reads:
        assert check_modalities(tiny_config, batch, known, decodable=decodable) == 2
    assert reads.count == 1
    with HostReads() as one_by_one:  # what the checks read without the deferral
        _check_entries(tiny_config, batch, known, set(decodable), None, None)
    assert one_by_one.count >= 8


def test_id_range_check_compares_beyond_the_ids_dtype(tiny_config):
    """Ids in a narrow integer dtype are compared with a vocabulary size that dtype cannot hold, without wrapping
    (which would fail the one read and send every check through a second pass)."""
    batch = make_batch(tiny_config)
    known = set(tiny_config.encoder_modalities)
    for dtype in (torch.uint8, torch.int16):
        ids = torch.full_like(batch["caption"]["tensor"], 200, dtype=dtype)  # caption vocabulary: 30,000+ ids
        with HostReads() as reads:
            assert check_modalities(tiny_config, {"caption": {**batch["caption"], "tensor": ids}}, known) == 2
        assert reads.count == 1, dtype
    ids = torch.full_like(batch["tok_depth@224"]["tensor"], 200, dtype=torch.uint8)
    ids[1, 3] = 255
    check_range(ids, "ids", 256)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 255\), got values in \[200, 255\]"):
        check_range(ids, "ids", 255)


def test_deferred_input_checks_raise_the_first_error(model, tiny_config):
    """A value error found in the one read is raised with its own message, and before the errors of later
    modalities, as when each check read the device itself."""
    batch = make_batch(tiny_config)
    nan_pixels = batch["rgb@224"]["tensor"].clone()
    nan_pixels[0, 1, 2, 3] = float("inf")
    short_mask = batch["caption"]["input_mask"][:, :5]
    bad = {**batch, "rgb@224": {"tensor": nan_pixels}, "caption": {**batch["caption"], "input_mask": short_mask}}
    with pytest.raises(ValueError, match=r"rgb@224: pixels holds 1 NaN or infinite value\(s\) of 301056"):
        model(bad)
    spec = (~batch["caption"]["target_mask"]).long()
    spec[1, 0] = -2
    bad = {**batch, "caption": {**batch["caption"], "decoder_attention_mask": spec}}
    with pytest.raises(ValueError, match=r"decoder_attention_mask'\] must hold integers >= 0.*got minimum -2"):
        model(bad)
    mask = batch["tok_depth@224"]["input_mask"].long()
    mask[0, 0] = 2
    bad = {**batch, "tok_depth@224": {**batch["tok_depth@224"], "input_mask": mask}}
    with pytest.raises(ValueError, match=r"input_mask'\] must hold booleans or 0 / 1, got values in \[0, 2\]"):
        model(bad)


@pytest.mark.parametrize("field,value", [("num_encoder_tokens", 0), ("num_encoder_tokens", 10_000),
                                         ("num_decoder_tokens", -1), ("num_decoder_tokens", 10_000)])
def test_token_budget_errors(model, tiny_config, field, value):
    with pytest.raises(ValueError, match=f"{field} must be in"):
        model(make_batch(tiny_config), **{field: value})


def test_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        FourMConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="'rgb@224' .*cannot be a decoder modality"):
        FourMConfig(decoder_modalities=["rgb@224"])
    with pytest.raises(ValueError, match="Unknown modality 'nope'"):
        FourMConfig(encoder_modalities=["nope"])
    with pytest.raises(ValueError, match="multiple of patch_size"):
        register_modality("tok_bad@100", "image_tokens", vocab_size=10, image_size=100, patch_size=16)


def test_native_checkpoint_disagreeing_with_config(model, tmp_path):
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["mlp_ratio"] = 2.0
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="disagrees with its config.*mlp"):
        FourMForMaskedModeling.from_pretrained(tmp_path)


def test_official_checkpoint_disagreeing_with_config(tmp_path, official_checkpoints):
    official = official_checkpoints["fm_4m7_style"]
    broken = tmp_path / "official"
    broken.mkdir()
    config = json.loads((official / "config.json").read_text())
    config["decoder_depth"] = 3
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").symlink_to(official / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing: \['decoder.layers.2"):
        FourMForMaskedModeling.from_pretrained(broken)
