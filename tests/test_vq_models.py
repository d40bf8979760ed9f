"""Unit tests of the modality tokenizers on tiny configs: configs, position tables, quantizers (lookup, codebook EMA,
dead-code restarts, Memcodes heads), VQ-VAE and DiVAE encode / decode, input checks, schedulers, losses, presets and
save / load."""

import copy
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_DECODER, TINY_UNET, TINY_VIT

from fourm_hf import (
    FourMDDIMScheduler,
    FourMDDPMScheduler,
    FourMDiVAE,
    FourMDiVAEConfig,
    FourMVQVAE,
    FourMVQVAEConfig,
    load_vq_model,
)
from fourm_hf.models.fourm_vq import modeling_fourm_vq
from fourm_hf.models.fourm_vq.configuration_fourm_vq import RECONSTRUCTION_LOSSES
from fourm_hf.models.fourm_vq.modeling_fourm_vq import (
    RECONSTRUCTION_LOSS_FUNCTIONS,
    FourMVQVAECosineQuantizer,
    resize_position_table,
    sincos_position_table,
)
from fourm_hf.models.fourm_vq.scheduling_fourm_divae import make_alphas_cumprod


def tiny_vqvae(**overrides) -> FourMVQVAE:
    torch.manual_seed(0)
    return FourMVQVAE(FourMVQVAEConfig(**{**TINY_VIT, **TINY_DECODER, **overrides})).eval()


def tiny_divae(**overrides) -> FourMDiVAE:
    torch.manual_seed(0)
    model = FourMDiVAE(FourMDiVAEConfig(**{**TINY_VIT, **TINY_UNET, **overrides})).eval()
    with torch.no_grad():  # the output convs start at zero; give the UNet a non-trivial output
        for module in model.decoder.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 0.05)
    return model


def tiny_memcodes(**overrides) -> FourMVQVAE:
    fields = dict(
        image_size=1, patch_size=1, num_channels=6, encoder_type="bottleneck_mlp", decoder_type="bottleneck_mlp",
        encoder_hidden_size=12, encoder_num_layers=1, decoder_hidden_size=12, decoder_num_layers=1,
        quantizer_type="memcodes", num_codebooks=4, codebook_size=5, latent_dim=8,
    )
    torch.manual_seed(0)
    return FourMVQVAE(FourMVQVAEConfig(**{**fields, **overrides})).eval()


# ----------------------------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(encoder_type="cnn"), "encoder_type must be one of"),
        (dict(encoder_hidden_size=30), "must be divisible by encoder_num_heads"),
        (dict(image_size=36), r"encoder image size \(36\) must be a multiple of its patch size \(8\)"),
        (dict(num_codebooks=2), "only supported by the memcodes quantizer"),
        (dict(quantizer_type="memcodes", num_codebooks=3), r"latent_dim \(8\) must be divisible by num_codebooks"),
        (dict(reconstruction_loss="cross_entropy"), "needs class-index inputs"),
        (dict(reconstruction_loss="huber"), "reconstruction_loss must be one of"),
    ],
)
def test_vqvae_config_rejects_inconsistent_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        FourMVQVAEConfig(**{**TINY_VIT, **TINY_DECODER, **overrides})


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(unet_norm_groups=5), "must be divisible by unet_norm_groups"),
        (dict(beta_schedule="cosine"), "beta_schedule must be one of"),
        (dict(prediction_type="x0"), "prediction_type must be one of"),
        (dict(num_classes=4), "class-index inputs"),
    ],
)
def test_divae_config_rejects_inconsistent_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        FourMDiVAEConfig(**{**TINY_VIT, **TINY_UNET, **overrides})


def test_config_round_trip_and_model_types(tmp_path):
    config = FourMDiVAEConfig(**TINY_VIT, **TINY_UNET)
    config.save_pretrained(tmp_path)
    reloaded = FourMDiVAEConfig.from_pretrained(tmp_path)
    assert reloaded.to_dict() == config.to_dict()
    assert (FourMVQVAEConfig.model_type, FourMDiVAEConfig.model_type) == ("fourm_vqvae", "fourm_divae")
    assert config.pixel_multiple == 8  # UNet patch 4 x one downsampling


def test_every_configurable_loss_has_an_implementation():
    assert set(RECONSTRUCTION_LOSSES) == set(RECONSTRUCTION_LOSS_FUNCTIONS)


# ----------------------------------------------------------------------------------------------------------------
# Position tables


def test_sincos_table_follows_the_official_layout():
    table = sincos_position_table(5, 6, 8)  # dim 8: frequencies 1 and 1/100
    assert table.shape == (1, 8, 5, 6)
    row, col = 2, 3
    expected = [math.sin(row), math.sin(row / 100), math.cos(row), math.cos(row / 100),
                math.sin(col), math.sin(col / 100), math.cos(col), math.cos(col / 100)]
    torch.testing.assert_close(table[0, :, row, col], torch.tensor(expected), atol=1e-6, rtol=0)


def test_position_table_resize():
    table = torch.randn(1, 8, 4, 4)
    same = resize_position_table(table, 4, 4)
    torch.testing.assert_close(same, table.flatten(2).transpose(1, 2), atol=1e-6, rtol=0)  # bicubic at scale 1
    assert resize_position_table(table, 2, 3).shape == (1, 6, 8)


# ----------------------------------------------------------------------------------------------------------------
# VQ-VAE encode / decode


@pytest.mark.parametrize("height, width", [(16, 16), (32, 32), (48, 48), (16, 40)])
def test_encode_decode_at_resolutions_other_than_the_stored_grid(height, width):
    model = tiny_vqvae()  # position tables stored for 32 px (4x4 tokens)
    x = torch.rand(2, 3, height, width) * 2 - 1
    with torch.no_grad():
        ids = model.encode(x)
        out = model.decode(ids)
    assert ids.shape == (2, height // 8, width // 8) and ids.dtype == torch.long
    assert ids.min() >= 0 and ids.max() < 16
    assert out.shape == (2, 3, height, width)


def test_decode_is_decode_latents_of_the_code_rows():
    model = tiny_vqvae()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        encoded = model.encode_latents(x)
        torch.testing.assert_close(model.tokens_to_latents(encoded.tokens), encoded.quantized_latents)
        torch.testing.assert_close(model.decode(encoded.tokens), model.decode_latents(encoded.quantized_latents))


def test_cosine_quantizer_picks_the_most_similar_code_and_returns_the_stored_row():
    model = tiny_vqvae()
    with torch.no_grad():
        model.quantize.codebook.mul_(torch.linspace(0.5, 3.0, 16)[:, None])  # rows of very different norms
        encoded = model.encode_latents(torch.rand(2, 3, 32, 32))
    latents = encoded.latents.permute(0, 2, 3, 1).reshape(-1, 8)
    codebook = model.quantize.codebook
    cosine = (latents @ codebook.t()) / (latents.norm(dim=1, keepdim=True) * codebook.norm(dim=1)[None])
    assert torch.equal(encoded.tokens.flatten(), cosine.argmax(dim=1))
    rows = encoded.quantized_latents.permute(0, 2, 3, 1).reshape(-1, 8)
    torch.testing.assert_close(rows, codebook[cosine.argmax(dim=1)], atol=0, rtol=0)


def test_inference_never_updates_the_codebook():
    model = tiny_vqvae()
    model.train()
    codebook, usage = model.quantize.codebook.clone(), model.quantize.cluster_size.clone()
    model.encode(torch.rand(2, 3, 32, 32))
    model.encode_latents(torch.rand(2, 3, 32, 32))
    model.eval()
    model(torch.rand(2, 3, 32, 32))
    assert torch.equal(model.quantize.codebook, codebook) and torch.equal(model.quantize.cluster_size, usage)
    model.train()
    model(torch.rand(2, 3, 32, 32))
    assert not torch.equal(model.quantize.codebook, codebook)


def test_codebook_ema_and_commitment_loss_match_the_official_update():
    config = FourMVQVAEConfig(**{**TINY_VIT, **TINY_DECODER, "codebook_size": 4, "latent_dim": 2, "ema_decay": 0.5,
                                 "dead_code_threshold": 0.0, "commitment_weight": 2.0})
    quantizer = FourMVQVAECosineQuantizer(config)
    quantizer.codebook.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -3.0]]))
    quantizer.cluster_size.zero_()
    points = torch.tensor([[1.0, 0.2], [3.0, -0.1], [0.1, 2.0]])
    latents = points.t().reshape(1, 2, 1, 3).requires_grad_(True)
    quantized, loss, ids = quantizer(latents, update_codebook=True)

    assert ids.tolist() == [[[0, 0, 1]]]
    old_rows = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(quantized[0, :, 0].t(), old_rows)  # straight-through value: the stored rows
    torch.testing.assert_close(loss, 2.0 * ((old_rows - points) ** 2).mean())
    torch.testing.assert_close(quantizer.cluster_size, torch.tensor([1.0, 0.5, 0.0, 0.0]))  # 0.5 * [2, 1, 0, 0]
    unit = points / points.norm(dim=1, keepdim=True)
    mean0 = (unit[0] + unit[1]) / (unit[0] + unit[1]).norm()
    expected = torch.stack([
        0.5 * torch.tensor([1.0, 0.0]) + 0.5 * mean0,
        0.5 * torch.tensor([0.0, 1.0]) + 0.5 * unit[2],
        torch.tensor([-1.0, 0.0]),  # unused codes keep their normalised value
        torch.tensor([0.0, -1.0]),
    ])
    torch.testing.assert_close(quantizer.codebook, expected)
    quantized.sum().backward()  # straight-through: identity gradient
    torch.testing.assert_close(latents.grad, torch.ones_like(latents))


@pytest.mark.parametrize("policy", ["batch_random", "linde_buzo_gray"])
def test_dead_codes_are_restarted(policy):
    config = FourMVQVAEConfig(**{**TINY_VIT, **TINY_DECODER, "codebook_size": 6, "latent_dim": 3,
                                 "dead_code_threshold": 0.3, "code_replacement_policy": policy})
    quantizer = FourMVQVAECosineQuantizer(config)
    quantizer.codebook.copy_(F.normalize(torch.randn(6, 3), dim=-1))
    quantizer.cluster_size.fill_(100.0)
    quantizer.cluster_size[[1, 4]] = 0.0  # stays below 0.3 after one EMA step (0.99 * 0 + 0.01 * count <= 0.2)
    before = quantizer.codebook.clone()
    points = torch.randn(20, 3)
    quantizer(points.t().reshape(1, 3, 4, 5), update_codebook=True)
    alive = [0, 2, 3, 5]
    assert not torch.allclose(quantizer.codebook[[1, 4]], before[[1, 4]])
    torch.testing.assert_close(quantizer.codebook[[1, 4]].norm(dim=1), torch.ones(2))
    if policy == "batch_random":  # restarted from normalised latents of the batch
        candidates = F.normalize(points, dim=-1)
        for row in quantizer.codebook[[1, 4]]:
            assert (candidates - row).norm(dim=1).min() < 1e-6
    else:  # split the most used codes: their (renormalised) copies, up to 1e-10 noise
        most_used = quantizer.cluster_size.argsort(descending=True)[:2]
        assert set(most_used.tolist()) <= set(alive)
        torch.testing.assert_close(quantizer.codebook[[1, 4]], F.normalize(quantizer.codebook[most_used], dim=-1))


def test_memcodes_heads_give_one_token_each():
    model = tiny_memcodes()
    features = torch.randn(3, 6)
    with torch.no_grad():
        encoded = model.encode_latents(features)  # (B, C) vectors are read as (B, C, 1, 1)
        same = model.encode(features[:, :, None, None])
    assert encoded.tokens.shape == (3, 4, 1, 1) and torch.equal(encoded.tokens, same)
    quantizer, head_dim = model.quantize, 2
    latents = encoded.latents[:, :, 0, 0].view(3, 4, head_dim)  # (B, heads, d)
    for head in range(4):
        keys = quantizer.codes[head] @ quantizer.key_proj[head]
        values = quantizer.codes[head] @ quantizer.value_proj[head]
        ids = (latents[:, head] * head_dim**-0.5 @ keys.t()).argmax(dim=1)
        assert torch.equal(encoded.tokens[:, head, 0, 0], ids)
        torch.testing.assert_close(encoded.quantized_latents[:, 2 * head : 2 * head + 2, 0, 0], values[ids])
    with torch.no_grad():
        decoded = model.decode(encoded.tokens)
        torch.testing.assert_close(model.decode(encoded.tokens[:, :, 0, 0]), decoded, atol=0, rtol=0)
    assert decoded.shape == (3, 6, 1, 1)


def test_class_id_input():
    model = tiny_vqvae(num_classes=5, num_channels=4, reconstruction_loss="cross_entropy")
    labels = torch.randint(0, 5, (2, 32, 32))
    with torch.no_grad():
        ids = model.encode(labels)
        logits = model.decode(ids)
    assert ids.shape == (2, 4, 4) and logits.shape == (2, 5, 32, 32)
    output = model(labels)
    torch.testing.assert_close(output.loss, F.cross_entropy(output.reconstruction, labels))
    bad = labels[:1].clone()
    bad[0, 3, 7] = 7
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 5\), got values in \[0, 7\]"):
        model.encode(bad)
    with pytest.raises(TypeError, match="x must hold integer class ids, got dtype torch.float32"):
        model.encode(torch.rand(1, 32, 32))
    with pytest.raises(ValueError, match=r"x must be class ids of shape \(batch, height, width\), got \(1, 1, 32, 32\)"):
        model.encode(labels[:1, None])
    torch.testing.assert_close(model.encode(labels.to(torch.uint8)), ids)  # any integer dtype


def test_class_embedding_gradient_is_the_lookups(monkeypatch):
    """Class ids are embedded by a lookup whose weight gradient is accumulated with index_put_ (faster on CPU than
    torch's embedding backward): the loss and every gradient equal those of a plain `F.embedding`."""
    model = tiny_vqvae(num_classes=5, num_channels=4, reconstruction_loss="cross_entropy").train()
    reference = copy.deepcopy(model)
    labels = torch.randint(0, 4, (3, 32, 32))
    labels[0] = 2  # a class filling a whole image; class 4 appears nowhere (a zero gradient row)
    loss = model(labels).loss
    loss.backward()
    monkeypatch.setattr(modeling_fourm_vq._ClassIdEmbedding, "apply", lambda weight, ids: F.embedding(ids, weight))
    reference_loss = reference(labels).loss
    reference_loss.backward()
    assert torch.equal(loss, reference_loss)
    grad = model.class_embedding.weight.grad
    assert grad[:4].abs().sum(1).min() > 0 and grad[4].abs().sum() == 0
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_feature_maps_use_a_pointwise_projection():
    model = tiny_vqvae(num_channels=10, patch_proj=False)
    assert model.encoder.patch_embed.kernel_size == (1, 1)
    x = torch.randn(2, 10, 4, 3)  # already on the token grid
    with torch.no_grad():
        ids = model.encode(x)
        out = model.decode(ids)
    assert ids.shape == (2, 4, 3) and out.shape == (2, 10, 4, 3)


def test_convnext_output_blocks():
    model = tiny_vqvae(num_channels=1, out_conv=True, reconstruction_loss="binary_cross_entropy")
    assert torch.all(model.decoder.out_conv[0].gamma == 1e-6)
    masks = (torch.rand(2, 1, 32, 32) > 0.5).float()
    output = model(masks)
    assert output.reconstruction.shape == (2, 1, 32, 32) and torch.isfinite(output.loss)


@pytest.mark.parametrize(
    "x, error, message",
    [
        (torch.rand(1, 4, 32, 32), ValueError, r"x must have shape \(batch, 3, height, width\), got \(1, 4, 32, 32\)"),
        (torch.rand(1, 3, 4, 4), ValueError, r"positive multiples of the patch size 8, got 4x4"),
        (torch.rand(1, 3, 12, 16), ValueError, r"positive multiples of the patch size 8, got 12x16"),
        (torch.randint(0, 3, (1, 3, 32, 32)), TypeError, "x must be a floating-point tensor"),
        ([[0.0]], TypeError, "x must be a torch.Tensor"),
    ],
)
def test_encode_rejects_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        tiny_vqvae().encode(x)


@pytest.mark.parametrize(
    "tokens, error, message",
    [
        (torch.full((1, 4, 4), 16), ValueError, r"lie in \[0, 16\) \(the codebook size\), got values in \[16, 16\]"),
        (torch.full((1, 4, 4), -1), ValueError, r"must lie in \[0, 16\)"),
        (torch.zeros(1, 16, dtype=torch.long), ValueError, r"must have shape \(batch, h, w\), got \(1, 16\)"),
        (torch.zeros(1, 4, 4), TypeError, "expects an integer tensor of token ids"),
    ],
)
def test_decode_rejects_bad_tokens(tokens, error, message):
    with pytest.raises(error, match=message):
        tiny_vqvae().decode(tokens)


def test_memcodes_token_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(batch, 4, h, w\) or \(batch, 4\), got \(2, 3\)"):
        tiny_memcodes().decode(torch.zeros(2, 3, dtype=torch.long))


def test_training_step_reaches_the_encoder():
    model = tiny_vqvae().train()
    output = model(torch.rand(2, 3, 32, 32) * 2 - 1)
    output.loss.backward()
    assert output.quantization_loss > 0
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0
    assert model.decoder.out_proj.weight.grad.abs().sum() > 0
    assert model.encoder.position_embeddings.grad is None  # fixed sin-cos table


def test_save_and_reload(tmp_path):
    from transformers import AutoModel

    model = tiny_vqvae().train()
    model(torch.rand(4, 3, 32, 32))  # move the codebook EMA away from its initialisation
    model.eval()
    model.save_pretrained(tmp_path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected_ids, expected_out = model.encode(x), model.decode(model.encode(x))
    for load in (FourMVQVAE.from_pretrained, AutoModel.from_pretrained, load_vq_model):
        reloaded = load(tmp_path)
        assert type(reloaded) is FourMVQVAE and not reloaded.training
        assert torch.equal(reloaded.quantize.cluster_size, model.quantize.cluster_size)
        with torch.no_grad():
            assert torch.equal(reloaded.encode(x), expected_ids)
            torch.testing.assert_close(reloaded.decode(expected_ids), expected_out)
    with pytest.raises(ValueError, match="holds a FourMVQVAE VQ model; load it with FourMVQVAE"):
        FourMDiVAE.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# DiVAE


def test_divae_decode_shapes_and_generator():
    model = tiny_divae()
    tokens = torch.randint(0, 16, (2, 3, 2))

    def run(seed, **kwargs):
        return model.decode(tokens, num_steps=3, generator=torch.Generator().manual_seed(seed), **kwargs)

    out = run(0)
    assert out.shape == (2, 3, 24, 16)
    torch.testing.assert_close(run(0), out, atol=0, rtol=0)
    assert not torch.allclose(run(1), out)
    assert run(0, image_size=32).shape == (2, 3, 32, 32)


def test_divae_decode_shows_a_progress_bar_that_can_be_switched_off(capsys):
    model = tiny_divae()
    tokens = torch.randint(0, 16, (1, 3, 2))

    def run(**kwargs):
        return model.decode(tokens, num_steps=3, generator=torch.Generator().manual_seed(0), **kwargs)

    shown = run()
    assert re.search(r"Diffusion decoding: 100%.*3/3", capsys.readouterr().err)
    torch.testing.assert_close(run(progress_bar=False), shown, atol=0, rtol=0)
    assert "Diffusion decoding" not in capsys.readouterr().err
    with pytest.raises(TypeError, match="progress_bar"):
        run(progress_bar="no")


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_single_step_decode_is_the_clamped_denoiser_prediction(scheduler):
    # ddpm with 1 step samples t = 0; ddim (trailing) t = 999, where zero terminal SNR leaves only the prediction
    model = tiny_divae()
    tokens = torch.randint(0, 16, (1, 4, 4))
    decoded = model.decode(tokens, num_steps=1, scheduler=scheduler, generator=torch.Generator().manual_seed(3))
    noise = torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(3))
    timestep = 0 if scheduler == "ddpm" else 999
    with torch.no_grad():
        prediction = model.denoise(noise, timestep, model.tokens_to_latents(tokens))
    assert prediction.abs().max() > 1  # the clamp matters
    torch.testing.assert_close(decoded, prediction.clamp(-1, 1), atol=1e-6, rtol=0)


def test_divae_rejects_sizes_the_unet_cannot_take():
    model = tiny_divae()
    with pytest.raises(ValueError, match=r"positive multiples of 8 .* got 36x32"):
        model.decode(torch.zeros(1, 4, 4, dtype=torch.long), num_steps=1, image_size=(36, 32))
    with pytest.raises(ValueError, match="scheduler must be one of .*got 'euler'"):
        model.decode(torch.zeros(1, 4, 4, dtype=torch.long), num_steps=1, scheduler="euler")


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
def test_divae_training_step(prediction_type):
    model = tiny_divae(prediction_type=prediction_type).train()
    clean = torch.rand(2, 3, 32, 32) * 2 - 1
    noise = torch.randn(2, 3, 32, 32)
    timesteps = torch.tensor([10, 900])
    output = model(clean, timesteps=timesteps, noise=noise)
    ac = make_alphas_cumprod(1000, "linear")[timesteps].view(2, 1, 1, 1)
    expected_target = {"sample": clean, "epsilon": noise, "v_prediction": ac.sqrt() * noise - (1 - ac).sqrt() * clean}
    torch.testing.assert_close(output.target, expected_target[prediction_type])
    torch.testing.assert_close(output.reconstruction_loss, F.mse_loss(output.denoiser_output, output.target))
    output.loss.backward()
    assert model.decoder.conv_in.weight.grad.abs().sum() > 0
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0  # through the straight-through estimator


def test_divae_save_and_reload(tmp_path):
    model = tiny_divae()
    model.save_pretrained(tmp_path)
    reloaded = load_vq_model(tmp_path)
    assert type(reloaded) is FourMDiVAE
    tokens = torch.randint(0, 16, (1, 4, 4))
    generator = torch.Generator()
    torch.testing.assert_close(
        reloaded.decode(tokens, num_steps=2, scheduler="ddim", generator=generator.manual_seed(0)),
        model.decode(tokens, num_steps=2, scheduler="ddim", generator=generator.manual_seed(0)),
    )


# ----------------------------------------------------------------------------------------------------------------
# Schedulers


def test_linear_schedule_with_zero_terminal_snr():
    ac = make_alphas_cumprod(1000, "linear", zero_terminal_snr=True)
    assert ac[999] == 0.0
    torch.testing.assert_close(ac[[0, 499]], torch.tensor([0.99990, 0.07603]), atol=1e-5, rtol=0)
    assert 1e-9 < ac[998] < 1e-8
    assert torch.all(ac[1:] < ac[:-1])


def test_shifted_cosine_schedule():
    ac = make_alphas_cumprod(1000, "shifted_cosine:0.5")
    assert ac[-1] == 0.0 and abs(float(ac[499]) - 0.8005) < 1e-3


@pytest.mark.parametrize(
    "spacing, steps, expected",
    [
        ("leading", 25, list(range(960, -1, -40))),
        ("trailing", 25, list(range(999, 38, -40))),
        ("leading", 4, [750, 500, 250, 0]),
        ("trailing", 4, [999, 749, 499, 249]),
        ("linspace", 4, [999, 666, 333, 0]),
    ],
)
def test_timestep_spacings(spacing, steps, expected):
    scheduler = FourMDDIMScheduler()
    scheduler.set_timesteps(steps, spacing)
    assert scheduler.timesteps.tolist() == expected
    assert scheduler.previous_timestep(expected[0]) == expected[1] and scheduler.previous_timestep(expected[-1]) == -1


def test_set_timesteps_rejects_bad_arguments():
    scheduler = FourMDDPMScheduler()
    with pytest.raises(ValueError, match=r"num_inference_steps must be in \[1, 1000\], got 0"):
        scheduler.set_timesteps(0)
    with pytest.raises(ValueError, match="timestep spacing must be one of .*got 'uniform'"):
        scheduler.set_timesteps(10, "uniform")


def test_ddim_step_follows_the_ddim_update():
    scheduler = FourMDDIMScheduler(prediction_type="epsilon", thresholding=False)
    scheduler.set_timesteps(4)  # 999, 749, 499, 249
    ac = scheduler.alphas_cumprod
    sample, eps = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    out = scheduler.step(eps, 749, sample)
    x0 = (sample - (1 - ac[749]).sqrt() * eps) / ac[749].sqrt()
    torch.testing.assert_close(out.pred_original_sample, x0)
    torch.testing.assert_close(out.prev_sample, ac[499].sqrt() * x0 + (1 - ac[499]).sqrt() * eps)


def test_ddpm_draws_noise_only_before_the_last_step():
    scheduler = FourMDDPMScheduler(thresholding=False)
    scheduler.set_timesteps(2)  # 500, 0
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    x0, sample = torch.randn(1, 1, 2, 2) * 3, torch.randn(1, 1, 2, 2)
    assert torch.equal(scheduler.step(x0, 0, sample, generator=generator).prev_sample, x0)
    assert torch.equal(generator.get_state(), state)
    scheduler.step(x0, 500, sample, generator=generator)
    assert not torch.equal(generator.get_state(), state)


def test_v_prediction_round_trip():
    scheduler = FourMDDPMScheduler(prediction_type="v_prediction")
    clean, noise, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([100, 700])
    noisy = scheduler.add_noise(clean, noise, t)
    velocity = scheduler.training_target(clean, noise, t)
    ac = scheduler.alphas_cumprod[t].view(2, 1, 1, 1)
    torch.testing.assert_close(ac.sqrt() * noisy - (1 - ac).sqrt() * velocity, clean, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# Losses and presets


def test_feature_losses():
    out = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    tgt = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    # per channel over space: channel 0 identical (cos 1), channel 1 orthogonal (cos 0)
    torch.testing.assert_close(RECONSTRUCTION_LOSS_FUNCTIONS["cosine"](out, tgt), torch.tensor(0.5))
    # per position over channels: position 0: (1,0)·(1,1)/sqrt2, position 1: (0,1)·(0,0) = 0
    torch.testing.assert_close(RECONSTRUCTION_LOSS_FUNCTIONS["cosine_1d"](out, tgt), torch.tensor(1 - (2**-0.5) / 2))
    logit, mask = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)  # sigmoid 0.5: softmax over (0.5, 0.5)
    bce = RECONSTRUCTION_LOSS_FUNCTIONS["binary_cross_entropy"](logit, mask)
    torch.testing.assert_close(bce, torch.tensor(math.log(2)))


def test_every_released_vq_model_is_named_by_its_family():
    from fourm_hf.modalities import FAMILIES, MODALITIES, vq_model_id

    hub_ids = {f.name: f.vq_model.hub_id for f in FAMILIES.values() if f.vq_model is not None}
    assert len(set(hub_ids.values())) == 12  # the 12 released VQ models; canny and SAM edges share one
    assert all(hub_id.startswith("EPFL-VILAB/4M_tokenizers_") for hub_id in hub_ids.values())
    assert hub_ids["tok_canny_edge"] == hub_ids["tok_sam_edge"]
    for name, spec in MODALITIES.items():  # every resolution of a family shares its VQ model
        if spec.family.vq_model is not None:
            assert vq_model_id(name) == hub_ids[spec.family.name]
    assert vq_model_id("depth") == vq_model_id("tok_depth@448") == "EPFL-VILAB/4M_tokenizers_depth_8k_224-448"
    assert FAMILIES["tok_rgb"].vq_model.model_class == "FourMDiVAE"
    assert FAMILIES["tok_semseg"].vq_model.model_class == "FourMVQVAE"
    with pytest.raises(ValueError, match="No released VQ model for 'tok_flow@224'"):
        vq_model_id("tok_flow@224")
    with pytest.raises(ValueError, match="No released VQ model for 'caption'"):
        vq_model_id("caption")


def test_load_vq_model_from_a_local_directory(tmp_path):
    from fourm_hf import load_tokenizer, load_vq_model

    tiny_memcodes().save_pretrained(tmp_path)
    assert isinstance(load_vq_model(str(tmp_path)), FourMVQVAE)
    with pytest.warns(FutureWarning, match="renamed `load_vq_model`"):
        assert isinstance(load_tokenizer(str(tmp_path)), FourMVQVAE)


def test_half_precision_models_encode_and_decode():
    model = tiny_vqvae().to(torch.bfloat16)
    with torch.no_grad():
        ids = model.encode(torch.rand(2, 3, 32, 32))  # float32 input, cast to the model dtype
        out = model.decode(ids)
    assert ids.dtype == torch.long and out.dtype == torch.bfloat16 and out.shape == (2, 3, 32, 32)
    divae = tiny_divae().to(torch.bfloat16)
    image = divae.decode(ids, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert image.dtype == torch.float32 and torch.isfinite(image).all()  # the sampler runs in float32
