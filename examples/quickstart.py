"""Build a small 4M, run one masked-modeling forward/backward pass, and round-trip it through save/load (the full
model through `AutoModelForMaskedLM`, its encoder alone through `AutoModel`).

    python examples/quickstart.py
"""

import tempfile

import torch

import fourm_hf  # noqa: F401  (registers the "fourm" model type with the Auto classes)
from fourm_hf import FourMConfig, FourMForMaskedModeling
from transformers import AutoModel, AutoModelForMaskedLM


def main() -> None:
    torch.manual_seed(0)
    config = FourMConfig(
        hidden_size=128, num_encoder_layers=2, num_decoder_layers=2, num_attention_heads=4,
        encoder_modalities=["rgb@224", "tok_depth@224", "caption"], decoder_modalities=["tok_depth@224", "caption"],
    )
    model = FourMForMaskedModeling(config)
    print(f"Built a 4M with {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters: "
          f"inputs {config.encoder_modalities}, targets {config.decoder_modalities}.")

    batch = 2
    depth = torch.randint(0, 8192, (batch, 196))
    visible = torch.rand(batch, 196).argsort(1) < 64  # 64 random depth tokens are inputs ...
    targets = ~visible & (torch.rand(batch, 196) < 0.5)  # ... and about half of the others are targets
    caption = torch.tensor([[2051, 1037, 2417, 2482, 3, 0, 0, 0]] * batch)  # token ids, [EOS]=3, [PAD]=0
    modalities = {
        "rgb@224": {"tensor": torch.randn(batch, 3, 224, 224)},  # fully visible pixels
        "tok_depth@224": {"tensor": depth, "input_mask": ~visible, "target_mask": ~targets},
        "caption": {  # the whole caption is the target: the decoder predicts it token by token
            "tensor": caption,
            "input_mask": torch.ones_like(caption, dtype=torch.bool),
            "target_mask": caption == 0,
        },
    }
    out = model(modalities, return_logits=True)
    out.loss.backward()
    losses = ", ".join(f"{k} {v.item():.3f}" for k, v in out.modality_losses.items())
    print(f"Masked-modeling loss {out.loss.item():.3f} ({losses}); encoder tokens "
          f"{tuple(out.encoder_last_hidden_state.shape)}; logits "
          + ", ".join(f"{k} {tuple(v.shape)}" for k, v in out.logits.items()))

    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        reloaded = AutoModelForMaskedLM.from_pretrained(directory)
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
        loss_again = reloaded(modalities).loss
        print(f"Saved and reloaded as {type(reloaded).__name__}: weights identical: {same}, "
              f"loss identical: {torch.equal(loss_again, out.loss.detach())}.")
        backbone = AutoModel.from_pretrained(directory)  # the encoder alone, as a feature extractor
        features = backbone(pixel_values=modalities["rgb@224"]["tensor"]).last_hidden_state
        print(f"AutoModel gives the {type(backbone).__name__}: RGB features {tuple(features.shape)}.")


if __name__ == "__main__":
    main()
