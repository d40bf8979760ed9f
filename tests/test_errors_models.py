"""Bad input to the models: config fields (FourMConfig, the VQ model configs, the task-head options), the VQ models'
encode / decode / training forward, the DiVAE sampler and its schedulers, and the task heads. Each case checks the
exception type and that the message names the culprit."""

import math

import pytest
import torch
from conftest import TINY_DECODER, TINY_FOURM, TINY_UNET, TINY_VIT

from fourm_hf import (
    FourMConfig,
    FourMDDIMScheduler,
    FourMDDPMScheduler,
    FourMDiVAE,
    FourMDiVAEConfig,
    FourMForDepthEstimation,
    FourMForImageClassification,
    FourMForSemanticSegmentation,
    FourMVQVAE,
    FourMVQVAEConfig,
)
from fourm_hf.models.fourm.modeling_fourm_tasks import layer_decay_param_groups

IDS = torch.zeros(1, 4, 4, dtype=torch.long)
PIXELS = torch.zeros(1, 3, 32, 32)


@pytest.fixture(scope="module")
def vqvae() -> FourMVQVAE:
    torch.manual_seed(0)
    return FourMVQVAE(FourMVQVAEConfig(**TINY_VIT, **TINY_DECODER)).eval()


@pytest.fixture(scope="module")
def semseg_vqvae() -> FourMVQVAE:
    torch.manual_seed(0)
    config = FourMVQVAEConfig(**TINY_VIT, **TINY_DECODER, num_classes=5, reconstruction_loss="cross_entropy")
    return FourMVQVAE(config).eval()


@pytest.fixture(scope="module")
def divae() -> FourMDiVAE:
    torch.manual_seed(0)
    return FourMDiVAE(FourMDiVAEConfig(**TINY_VIT, **TINY_UNET)).eval()


@pytest.fixture(scope="module")
def heads() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "classification": FourMForImageClassification(FourMConfig(**TINY_FOURM, num_labels=3, head_hidden_size=8)),
        "segmentation": FourMForSemanticSegmentation(FourMConfig(**TINY_FOURM, num_labels=3, head_hidden_size=8)),
        "depth": FourMForDepthEstimation(FourMConfig(**TINY_FOURM, head_hidden_size=8)),
    }


# ----------------------------------------------------------------------------------------------------------------
# Config fields


@pytest.mark.parametrize(
    "fields, error, message",
    [
        (dict(num_encoder_layers="two"), TypeError, r"FourMConfig\.num_encoder_layers must be int, got str 'two'"),
        (dict(hidden_size=32.0), TypeError, r"FourMConfig\.hidden_size must be int, got float 32\.0"),
        (dict(hidden_size=True), TypeError, r"FourMConfig\.hidden_size must be int, got bool"),
        (dict(gated_mlp="no"), TypeError, r"FourMConfig\.gated_mlp must be bool, got str 'no'"),
        (dict(encoder_modalities="rgb@224"), TypeError, r"encoder_modalities must be list of str or tuple of str"),
        (dict(decoder_modalities=["caption", 3]), TypeError, r"decoder_modalities must be list of str"),
        (dict(modality_specs=[1]), TypeError, r"modality_specs must be dict or None, got list"),
        (dict(hidden_size=-32, num_attention_heads=4), ValueError, r"hidden_size must be >= 1, got -32"),
        (dict(num_encoder_layers=0), ValueError, r"num_encoder_layers must be >= 1, got 0"),
        (dict(num_decoder_layers=-1), ValueError, r"num_decoder_layers must be >= 0, got -1"),
        (dict(num_register_tokens=-2), ValueError, r"num_register_tokens must be >= 0, got -2"),
        (dict(mlp_ratio=0), ValueError, r"mlp_ratio must be > 0, got 0"),
        (dict(layer_norm_eps=float("nan")), ValueError, r"layer_norm_eps must be a finite number, got nan"),
        (dict(encoder_drop_path_rate=1.0), ValueError, r"encoder_drop_path_rate must be in \[0, 1\), got 1\.0"),
        (dict(decoder_drop_path_rate=-0.1), ValueError, r"decoder_drop_path_rate must be in \[0, 1\), got -0\.1"),
        (dict(hidden_act="relu"), ValueError, r"hidden_act must be one of \['gelu', 'silu'\], got 'relu'"),
        (dict(hidden_act="gleu"), ValueError, r"got 'gleu'\. Did you mean 'gelu'\?"),
        (dict(encoder_modalities=[]), ValueError, r"encoder_modalities is empty"),
        (dict(encoder_modalities=["rgb@224", "rgb@224"]), ValueError, r"lists \['rgb@224'\] more than once"),
        (dict(encoder_modalities=["rgb@224", "tok_dept@224"]), ValueError, r"Unknown modality 'tok_dept@224'"),
        (dict(decoder_modalities=["tok_flow@224"]), ValueError, r"Unknown modality 'tok_flow@224'"),
        (dict(decoder_modalities=["rgb@224"]), ValueError, r"'rgb@224' \(pixels\) has no output head"),
        (dict(num_labels=0), ValueError, r"FourMConfig\.num_labels must be >= 1, got 0"),
        (dict(num_labels=2.0), TypeError, r"FourMConfig\.num_labels must be an integer, got float 2\.0"),
    ],
)
def test_fourm_config_rejects(fields, error, message):
    with pytest.raises(error, match=message):
        FourMConfig(**{**TINY_FOURM, **fields})


@pytest.mark.parametrize(
    "fields, error, message",
    [
        (dict(codebook_size="big"), TypeError, r"FourMVQVAEConfig\.codebook_size must be int, got str 'big'"),
        (dict(codebook_size=0), ValueError, r"codebook_size must be >= 1, got 0"),
        (dict(patch_size=0), ValueError, r"patch_size must be >= 1, got 0"),
        (dict(latent_dim=-8), ValueError, r"latent_dim must be >= 1, got -8"),
        (dict(num_channels=0), ValueError, r"num_channels must be >= 1, got 0"),
        (dict(num_classes=0), ValueError, r"num_classes must be >= 1, got 0"),
        (dict(mlp_ratio=-1.0), ValueError, r"mlp_ratio must be > 0, got -1\.0"),
        (dict(ema_decay=1.5), ValueError, r"ema_decay must be in \[0, 1\], got 1\.5"),
        (dict(post_mlp=1), TypeError, r"post_mlp must be bool, got int 1"),
        (dict(decoder_num_layers=0), ValueError, r"decoder_num_layers must be >= 1, got 0"),
        (dict(quantizer_type="cosin"), ValueError, r"quantizer_type must be one of .* Did you mean 'cosine'\?"),
    ],
)
def test_vqvae_config_rejects(fields, error, message):
    with pytest.raises(error, match=message):
        FourMVQVAEConfig(**{**TINY_VIT, **TINY_DECODER, **fields})


@pytest.mark.parametrize(
    "fields, error, message",
    [
        (dict(unet_channel_mult=()), ValueError, r"unet_channel_mult is empty"),
        (dict(unet_channel_mult=(1, 0)), ValueError, r"unet_channel_mult\[1\] must be >= 1, got 0"),
        (dict(unet_channel_mult=(1.5, 2)), TypeError, r"unet_channel_mult must be tuple of int or list of int"),
        (dict(num_train_timesteps=1), ValueError, r"num_train_timesteps must be >= 2, got 1"),
        (dict(beta_start=0.0), ValueError, r"beta_start must be in \(0, 1\], got 0\.0"),
        (dict(beta_start=0.03), ValueError, r"beta_start \(0\.03\) must not exceed beta_end \(0\.02\)"),
        (dict(condition_dropout=1.0), ValueError, r"condition_dropout must be in \[0, 1\), got 1\.0"),
        (dict(beta_schedule="cosine"), ValueError, r"beta_schedule must be one of"),
        (
            dict(beta_schedule="shifted_cosine:-1"),
            ValueError,
            r"shift after 'shifted_cosine:' must be a positive number",
        ),
        (dict(beta_schedule="shifted_cosine:abc"), ValueError, r"'shifted_cosine:abc'"),
        (dict(scheduler="euler"), ValueError, r"scheduler must be one of \['ddim', 'ddpm'\], got 'euler'"),
    ],
)
def test_divae_config_rejects(fields, error, message):
    with pytest.raises(error, match=message):
        FourMDiVAEConfig(**{**TINY_VIT, **TINY_UNET, **fields})


def test_config_fields_given_to_from_pretrained_are_checked(tmp_path):
    FourMConfig(**TINY_FOURM).save_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"FourMConfig\.num_encoder_layers must be int, got str 'x'"):
        FourMConfig.from_pretrained(tmp_path, num_encoder_layers="x")
    assert FourMConfig.from_pretrained(tmp_path, encoder_drop_path_rate=0.1).encoder_drop_path_rate == 0.1


# ----------------------------------------------------------------------------------------------------------------
# VQ models


@pytest.mark.parametrize(
    "x, error, message",
    [
        (torch.zeros(0, 3, 32, 32), ValueError, r"x is an empty batch \(shape \(0, 3, 32, 32\)\)"),
        (torch.zeros(1, 1, 32, 32), ValueError, r"x must have shape \(batch, 3, height, width\), got \(1, 1, 32, 32\)"),
        (torch.zeros(3, 32, 32), ValueError, r"x must have shape \(batch, 3, height, width\), got \(3, 32, 32\)"),
        (torch.zeros(1, 3, 30, 32), ValueError, r"multiples of the patch size 8, got 30x32"),
        (
            torch.zeros(1, 3, 32, 32, dtype=torch.uint8),
            TypeError,
            r"x must be a floating-point tensor.*uint8.*\[-1, 1\]",
        ),
        (
            torch.zeros(1, 3, 32, 32, dtype=torch.complex64),
            TypeError,
            r"floating-point tensor, got dtype torch\.complex64",
        ),
        (torch.full((1, 3, 32, 32), math.nan), ValueError, r"x holds 3072 NaN or infinite value\(s\)"),
        (torch.zeros(1, 3, 32, 32).index_fill_(3, torch.tensor([0]), math.inf), ValueError, r"x holds 96 NaN"),
        (torch.zeros(1, 3, 32, 32).numpy(), TypeError, r"x must be a torch\.Tensor, got ndarray"),
    ],
)
def test_vqvae_encode_rejects(vqvae, x, error, message):
    with pytest.raises(error, match=message):
        vqvae.encode(x)


@pytest.mark.parametrize(
    "x, error, message",
    [
        (torch.zeros(1, 32, 32), TypeError, r"x must hold integer class ids, got dtype torch\.float32"),
        (torch.zeros(1, 32, 32, dtype=torch.bool), TypeError, r"integer class ids, got dtype torch\.bool"),
        (torch.full((1, 32, 32), 5), ValueError, r"class ids must lie in \[0, 5\), got values in \[5, 5\]"),
        (torch.full((1, 32, 32), -1), ValueError, r"class ids must lie in \[0, 5\), got values in \[-1, -1\]"),
        (torch.zeros(0, 32, 32, dtype=torch.long), ValueError, r"x is an empty batch"),
        (torch.zeros(1, 0, 32, dtype=torch.long), ValueError, r"x has a dimension of size 0"),
    ],
)
def test_class_id_vqvae_encode_rejects(semseg_vqvae, x, error, message):
    with pytest.raises(error, match=message):
        semseg_vqvae.encode(x)


@pytest.mark.parametrize(
    "tokens, error, message",
    [
        (torch.zeros(0, 4, 4, dtype=torch.long), ValueError, r"tokens is an empty batch"),
        (torch.zeros(1, 0, 4, dtype=torch.long), ValueError, r"tokens has a dimension of size 0"),
        (torch.full((1, 4, 4), 16), ValueError, r"token ids must lie in \[0, 16\) \(the codebook size\)"),
        (
            torch.zeros(1, 16, dtype=torch.long),
            ValueError,
            r"got \(1, 16\) \(flattened ids\? reshape them to \(batch, 4, 4\)\)",
        ),
        (torch.zeros(1, 4, 4, dtype=torch.bool), TypeError, r"tokens must be integer token ids, got a bool tensor"),
        (torch.zeros(1, 4, 4), TypeError, r"expects an integer tensor of token ids, got Tensor torch\.float32"),
        ([[1, 2], [3, 4]], TypeError, r"expects an integer tensor of token ids, got list"),
    ],
)
def test_vqvae_decode_rejects(vqvae, tokens, error, message):
    with pytest.raises(error, match=message):
        vqvae.decode(tokens)


@pytest.mark.parametrize(
    "latents, error, message",
    [
        (torch.zeros(1, 3, 4, 4), ValueError, r"quantized_latents must have shape \(batch, 8, h, w\)"),
        (torch.zeros(1, 8, 4, 4, dtype=torch.long), TypeError, r"quantized_latents must be a floating-point tensor"),
        (torch.full((1, 8, 4, 4), math.nan), ValueError, r"quantized_latents holds 128 NaN"),
    ],
)
def test_decode_latents_rejects(vqvae, latents, error, message):
    with pytest.raises(error, match=message):
        vqvae.decode_latents(latents)


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (
            torch.zeros(1, 3, 16, 16),
            ValueError,
            r"labels must have the reconstruction's shape \(1, 3, 32, 32\), got \(1, 3, 16, 16\)",
        ),
        (torch.zeros(1, 3, 32, 32, dtype=torch.long), TypeError, r"labels must be a floating-point tensor"),
        (torch.full((1, 3, 32, 32), math.nan), ValueError, r"labels holds 3072 NaN"),
        ([0.0], TypeError, r"labels must be a torch\.Tensor, got list"),
    ],
)
def test_vqvae_forward_rejects_labels(vqvae, labels, error, message):
    with pytest.raises(error, match=message):
        vqvae(PIXELS, labels=labels)


def test_vqvae_forward_rejects_bad_input(vqvae, semseg_vqvae):
    with pytest.raises(ValueError, match=r"pixel_values is an empty batch"):
        vqvae(torch.zeros(0, 3, 32, 32))
    with pytest.raises(TypeError, match=r"labels must be integer class ids for cross_entropy"):
        semseg_vqvae(torch.zeros(1, 32, 32, dtype=torch.long), labels=torch.zeros(1, 32, 32))
    with pytest.raises(ValueError, match=r"labels: class ids must lie in \[0, 5\)"):
        semseg_vqvae(torch.zeros(1, 32, 32, dtype=torch.long), labels=torch.full((1, 32, 32), 9))
    mse = FourMVQVAE(FourMVQVAEConfig(**TINY_VIT, **TINY_DECODER, num_classes=5))
    with pytest.raises(ValueError, match=r"trains with reconstruction_loss='cross_entropy', this config has 'mse'"):
        mse(torch.zeros(1, 32, 32, dtype=torch.long))
    masks = FourMVQVAE(
        FourMVQVAEConfig(**TINY_VIT, **TINY_DECODER, num_channels=1, reconstruction_loss="binary_cross_entropy")
    )
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\] for binary_cross_entropy"):
        masks(torch.zeros(1, 1, 32, 32), labels=torch.full((1, 1, 32, 32), 2.0))


# ----------------------------------------------------------------------------------------------------------------
# DiVAE decoding, training and schedulers


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(num_steps=2.5), TypeError, r"num_steps must be an integer, got float 2\.5"),
        (dict(num_steps=True), TypeError, r"num_steps must be an integer, got bool"),
        (dict(num_steps=0), ValueError, r"num_steps must be in \[1, 1000\], got 0"),
        (dict(num_steps=-3), ValueError, r"num_steps must be in \[1, 1000\], got -3"),
        (dict(num_steps=1001), ValueError, r"num_steps must be in \[1, 1000\], got 1001"),
        (
            dict(scheduler="ddpn"),
            ValueError,
            r"scheduler must be one of \['ddim', 'ddpm'\], got 'ddpn'\. Did you mean 'ddpm'\?",
        ),
        (dict(scheduler=3), TypeError, r"scheduler must be 'ddpm', 'ddim', a FourMNoiseScheduler or None, got int 3"),
        (dict(generator=0), TypeError, r"generator must be a torch\.Generator or None, got int 0"),
        (dict(timestep_spacing="lead"), ValueError, r"timestep spacing must be one of .* Did you mean 'leading'\?"),
        (dict(image_size=32.0), TypeError, r"image_size must be an integer, got float 32\.0"),
        (dict(image_size=(-8, 32)), ValueError, r"image_size must be >= 1, got -8"),
        (dict(image_size=(32, 32, 3)), ValueError, r"image_size must be an int or a \(height, width\) pair"),
        (dict(image_size=36), ValueError, r"positive multiples of 8 .* got 36x36"),
    ],
)
def test_divae_decode_rejects(divae, kwargs, error, message):
    with pytest.raises(error, match=message):
        divae.decode(IDS, **{"num_steps": 1, **kwargs})


def test_divae_decode_rejects_bad_tokens_and_latents(divae):
    with pytest.raises(ValueError, match=r"tokens is an empty batch"):
        divae.decode(torch.zeros(0, 4, 4, dtype=torch.long), num_steps=1)
    with pytest.raises(ValueError, match=r"quantized_latents must have shape \(batch, 8, h, w\)"):
        divae.decode_latents(torch.zeros(8, 4, 4), num_steps=1)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(timesteps=torch.tensor([1000])),
            ValueError,
            r"timesteps must lie in \[0, 1000\) \(num_train_timesteps\), got values in \[1000, 1000\]",
        ),
        (dict(timesteps=torch.tensor([-1])), ValueError, r"timesteps must lie in \[0, 1000\)"),
        (dict(timesteps=torch.tensor([0.5])), TypeError, r"timesteps must be an integer tensor"),
        (
            dict(timesteps=torch.tensor([1, 2])),
            ValueError,
            r"timesteps must have shape \(batch,\) = \(1,\), one step per sample, got \(2,\)",
        ),
        (
            dict(timesteps=5),
            TypeError,
            r"timesteps must be an integer tensor of training steps, one per sample, got int",
        ),
        (
            dict(noise=torch.zeros(1, 3, 16, 16)),
            ValueError,
            r"noise must have the shape of pixel_values \(1, 3, 32, 32\)",
        ),
        (dict(noise=torch.zeros(1, 3, 32, 32, dtype=torch.long)), TypeError, r"noise must be a floating-point tensor"),
        (dict(noise=torch.full((1, 3, 32, 32), math.nan)), ValueError, r"noise holds 3072 NaN"),
        (dict(generator="seed"), TypeError, r"generator must be a torch\.Generator or None, got str 'seed'"),
    ],
)
def test_divae_forward_rejects(divae, kwargs, error, message):
    with pytest.raises(error, match=message):
        divae(PIXELS, **kwargs)


def test_divae_denoise_rejects(divae):
    latents = torch.zeros(1, 8, 4, 4)
    with pytest.raises(ValueError, match=r"timesteps must be in \[0, 999\], got -3"):
        divae.denoise(PIXELS, -3, latents)
    with pytest.raises(ValueError, match=r"condition_mask must have shape \(1, 4, 4\), got \(1, 2, 2\)"):
        divae.denoise(PIXELS, 5, latents, torch.zeros(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"quantized_latents has 2 samples, noisy_pixel_values 1"):
        divae.denoise(PIXELS, 5, torch.zeros(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"noisy_pixel_values must have shape \(batch, 3, height, width\)"):
        divae.denoise(torch.zeros(1, 1, 32, 32), 5, latents)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: FourMDDPMScheduler(num_train_timesteps=0), ValueError, r"num_train_timesteps must be >= 2, got 0"),
        (lambda: FourMDDPMScheduler(num_train_timesteps=10.0), TypeError, r"num_train_timesteps must be an integer"),
        (
            lambda: FourMDDPMScheduler(beta_schedule="cosine"),
            ValueError,
            r"beta_schedule must be one of .*got 'cosine'",
        ),
        (lambda: FourMDDPMScheduler(prediction_type="x0"), ValueError, r"prediction_type must be one of .*got 'x0'"),
        (
            lambda: FourMDDPMScheduler().set_timesteps(2.5),
            TypeError,
            r"num_inference_steps must be an integer, got float 2\.5",
        ),
        (
            lambda: FourMDDPMScheduler().step(torch.zeros(1), 5000, torch.zeros(1)),
            ValueError,
            r"timestep must be in \[0, 999\], got 5000",
        ),
        (
            lambda: FourMDDPMScheduler().step(torch.zeros(2), 5, torch.zeros(3)),
            ValueError,
            r"model_output and sample must have the same shape, got \{'model_output': \(2,\), 'sample': \(3,\)\}",
        ),
        (
            lambda: FourMDDIMScheduler().step(torch.zeros(1), 5, torch.zeros(1), eta=-1.0),
            ValueError,
            r"eta must be >= 0, got -1\.0",
        ),
        (
            lambda: FourMDDPMScheduler().add_noise(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1000])),
            ValueError,
            r"timesteps must lie in \[0, 1000\)",
        ),
    ],
)
def test_scheduler_rejects(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------------------------------------------
# Task heads


@pytest.mark.parametrize(
    "head, pixel_values, error, message",
    [
        ("classification", torch.zeros(0, 3, 224, 224), ValueError, r"rgb@224: the tensor is an empty batch"),
        ("segmentation", torch.zeros(0, 3, 224, 224), ValueError, r"rgb@224: the tensor is an empty batch"),
        (
            "classification",
            torch.zeros(1, 3, 200, 200),
            ValueError,
            r"pixel_values of shape \(1, 3, 200, 200\) match no pixel modality",
        ),
        ("depth", torch.zeros(1, 3, 224, 224, dtype=torch.uint8), TypeError, r"rgb@224 expects floating-point pixels"),
        ("depth", torch.full((1, 3, 224, 224), math.nan), ValueError, r"rgb@224: pixels holds 150528 NaN"),
    ],
)
def test_heads_reject_pixels(heads, head, pixel_values, error, message):
    with pytest.raises(error, match=message):
        heads[head](pixel_values)


@pytest.mark.parametrize(
    "head, labels, error, message",
    [
        (
            "classification",
            torch.tensor([0, 3]),
            ValueError,
            r"labels must be class ids in \[0, 2\], got values in \[0, 3\]",
        ),
        (
            "classification",
            torch.tensor([0.0, 1.5]),
            ValueError,
            r"labels of shape \(batch,\) must be integer class ids .*fractional",
        ),
        (
            "classification",
            torch.tensor([0, 1, 2]),
            ValueError,
            r"labels must be integer class ids of shape \(batch,\) = \(2,\)",
        ),
        ("classification", [0, 1], TypeError, r"labels must be a torch\.Tensor, got list"),
        ("segmentation", torch.full((2, 224, 224), 3), ValueError, r"class ids in \[0, 2\] or the ignore index 255"),
        ("segmentation", torch.zeros(2, 224, 224), ValueError, r"labels must be integer class maps"),
        (
            "segmentation",
            torch.zeros(2, 112, 112, dtype=torch.long),
            ValueError,
            r"\(2, 224, 224\), got torch\.int64 of shape \(2, 112, 112\)",
        ),
        ("depth", torch.ones(2, 224, 224, dtype=torch.long), ValueError, r"labels must be floating-point depth maps"),
        ("depth", torch.ones(2, 1, 224, 224), ValueError, r"got torch\.float32 of shape \(2, 1, 224, 224\)"),
    ],
)
def test_heads_reject_labels(heads, head, labels, error, message):
    with pytest.raises(error, match=message):
        heads[head](torch.zeros(2, 3, 224, 224), labels=labels)


def test_classification_rejects_bad_multi_label_and_regression_targets():
    multi = FourMForImageClassification(
        FourMConfig(**TINY_FOURM, num_labels=3, head_hidden_size=8, problem_type="multi_label_classification")
    )
    with pytest.raises(ValueError, match=r"multi-label labels must lie in \[0, 1\]"):
        multi(torch.zeros(1, 3, 224, 224), labels=torch.tensor([[0.0, 2.0, 1.0]]))
    with pytest.raises(ValueError, match=r"labels holds 1 NaN"):
        multi(torch.zeros(1, 3, 224, 224), labels=torch.tensor([[0.0, math.nan, 1.0]]))
    regression = FourMForImageClassification(FourMConfig(**TINY_FOURM, num_labels=1, head_hidden_size=8))
    with pytest.raises(ValueError, match=r"labels holds 1 NaN"):
        regression(torch.zeros(1, 3, 224, 224), labels=torch.tensor([math.inf]))


def test_heads_reject_bad_extra_arguments(heads):
    pixels = torch.zeros(1, 3, 224, 224)
    with pytest.raises(TypeError, match=r"num_encoder_tokens must be an integer, got float 2\.5"):
        heads["classification"](pixels, num_encoder_tokens=2.5)
    with pytest.raises(ValueError, match=r"num_encoder_tokens must keep all 196 patch tokens"):
        heads["classification"](pixels, num_encoder_tokens=-1)
    with pytest.raises(TypeError, match=r"modalities must be a dict .* got list"):
        heads["classification"](pixels, modalities=[1])
    with pytest.raises(ValueError, match=r"Unknown modality 'captoin'.*Did you mean 'caption'\?"):
        heads["classification"](pixels, modalities={"captoin": {"tensor": torch.zeros(1, 3, dtype=torch.long)}})


@pytest.mark.parametrize(
    "head_class, fields, error, message",
    [
        (
            FourMForDepthEstimation,
            dict(depth_loss="l2"),
            ValueError,
            r"depth_loss must be one of \['l1', 'silog'\], got 'l2'",
        ),
        (FourMForDepthEstimation, dict(depth_loss="silgo"), ValueError, r"Did you mean 'silog'\?"),
        (FourMForSemanticSegmentation, dict(head_hidden_size=0), ValueError, r"head_hidden_size must be >= 1, got 0"),
        (FourMForSemanticSegmentation, dict(head_hidden_size=8.0), TypeError, r"head_hidden_size must be an integer"),
        (
            FourMForSemanticSegmentation,
            dict(semantic_loss_ignore_index="x"),
            TypeError,
            r"semantic_loss_ignore_index must be an integer",
        ),
        (
            FourMForImageClassification,
            dict(problem_type="multi"),
            ValueError,
            r"problem_type must be one of .*got 'multi'",
        ),
    ],
)
def test_heads_reject_bad_options(head_class, fields, error, message):
    with pytest.raises(error, match=message):
        head_class(FourMConfig(**TINY_FOURM, **fields))


def test_heads_reject_bad_overrides_in_from_pretrained(tmp_path):
    FourMConfig(**TINY_FOURM).save_pretrained(tmp_path)
    FourMForImageClassification(FourMConfig(**TINY_FOURM)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"num_labels must be >= 1, got -2"):
        FourMForImageClassification.from_pretrained(tmp_path, num_labels=-2)
    with pytest.raises(ValueError, match=r"encoder_drop_path_rate must be in \[0, 1\), got 2\.0"):
        FourMForImageClassification.from_pretrained(tmp_path, encoder_drop_path_rate=2.0)
    with pytest.raises(TypeError, match=r"id2label must be a dict \{class id: name\}, got list"):
        FourMForImageClassification.from_pretrained(tmp_path, id2label=["cat"])


def test_labels_without_a_valid_pixel_warn_that_the_batch_adds_nothing(heads, caplog):
    depth = heads["depth"](torch.zeros(1, 3, 224, 224), labels=torch.full((1, 224, 224), math.nan))
    assert depth.loss == 0
    segmentation = heads["segmentation"](torch.zeros(1, 3, 224, 224), labels=torch.full((1, 224, 224), 255))
    assert segmentation.loss == 0
    assert "Depth labels without a valid pixel" in caplog.text
    assert "every pixel at the ignore index 255" in caplog.text


def test_models_refuse_a_config_of_another_class():
    with pytest.raises(TypeError, match=r"FourMVQVAE is built from a FourMVQVAEConfig, got a FourMDiVAEConfig"):
        FourMVQVAE(FourMDiVAEConfig(**TINY_VIT, **TINY_UNET))
    with pytest.raises(
        TypeError, match=r"FourMForImageClassification is built from a FourMConfig, got a FourMVQVAEConfig"
    ):
        FourMForImageClassification(FourMVQVAEConfig(**TINY_VIT, **TINY_DECODER))


def test_fine_tuning_helpers_reject(heads):
    model = heads["classification"]
    with pytest.raises(ValueError, match=r"learning_rate must be > 0, got -1\.0"):
        layer_decay_param_groups(model, -1.0)
    with pytest.raises(ValueError, match=r"weight_decay must be >= 0, got -1"):
        layer_decay_param_groups(model, 1e-3, weight_decay=-1)
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\], got 1\.5"):
        layer_decay_param_groups(model, 1e-3, layer_decay=1.5)
    with pytest.raises(TypeError, match=r"layer_decay must be a number, got str '0\.5'"):
        layer_decay_param_groups(model, 1e-3, layer_decay="0.5")
    with pytest.raises(TypeError, match=r"num_layers must be an integer, got float 2\.5"):
        layer_decay_param_groups(model, 1e-3, num_layers=2.5)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got str"):
        layer_decay_param_groups("model", 1e-3)
    with pytest.raises(TypeError, match=r"freeze must be True or False, got str 'no'"):
        model.freeze_encoder("no")


def test_scheduler_training_helpers_reject():
    scheduler = FourMDDPMScheduler(prediction_type="v_prediction")
    steps = torch.tensor([1, 2])
    with pytest.raises(TypeError, match=r"original must be a floating-point tensor, got NoneType"):
        scheduler.add_noise(None, torch.zeros(2, 3), steps)
    with pytest.raises(ValueError, match=r"original and noise must have the same shape"):
        scheduler.training_target(torch.zeros(2, 3), torch.zeros(2, 4), steps)
    with pytest.raises(TypeError, match=r"timestep spacing must be a string or None, got Tensor"):
        scheduler.set_timesteps(10, torch.zeros(2))


def test_divae_denoise_names_its_own_arguments(divae):
    with pytest.raises(ValueError, match=r"FourMDiVAE\.denoise: quantized_latents must have shape \(batch, 8, h, w\)"):
        divae.denoise(PIXELS, 5, torch.zeros(1, 3, 4, 4))
    with pytest.raises(TypeError, match=r"condition_mask must be a bool tensor or None, got Tensor torch\.int64"):
        divae.denoise(PIXELS, 5, torch.zeros(1, 8, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize(
    "config_class, fields, message",
    [
        (FourMConfig, dict(hiden_size=64), r"FourMConfig has no field 'hiden_size'\. Did you mean 'hidden_size'\?"),
        (FourMConfig, dict(num_encoder_layer=2), r"Did you mean 'num_encoder_layers'\?"),
        (FourMVQVAEConfig, dict(codebok_size=64), r"FourMVQVAEConfig has no field 'codebok_size'\. Did you mean"),
        (FourMDiVAEConfig, dict(num_train_timestep=10), r"Did you mean 'num_train_timesteps'\?"),
    ],
)
def test_configs_refuse_misspelt_fields(config_class, fields, message):
    with pytest.raises(TypeError, match=message):
        config_class(**fields)


def test_configs_keep_other_extra_attributes():
    config = FourMConfig(**TINY_FOURM, head_hidden_size=8, my_note="kept")
    assert (config.head_hidden_size, config.my_note) == (8, "kept")
