"""A web demo of 4M: upload an image or type a caption, choose what to generate, and see every decoded modality.

    pip install -e ".[app]"
    python examples/demo.py          # trains and saves the demo's small 4M (outputs/demo/fourm, outputs/demo/processor)
    python examples/app.py           # then open http://127.0.0.1:7860
    python examples/app.py --model path/or/hub-id --processor path/or/hub-id --port 8080

The app uses the model's own recipes: `FourMGenerationConfig.rgb_to_all` when an image is given (a typed caption is
then an extra condition), `caption_to_all` when only a caption is, each restricted to the chosen targets. Outputs are
the `plot_modalities` grid, one tile per image-like modality (boxes drawn on the image) and the generated text.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local demo
try:
    import gradio as gr
except ImportError as error:
    raise ImportError('The web demo needs Gradio: pip install -e ".[app]"') from error

from fourm_hf import FourMForMaskedModeling, FourMGenerationConfig, FourMProcessor, plot_modalities
from fourm_hf.evaluation.rendering import render_image

DEFAULT_MODEL, DEFAULT_PROCESSOR = "outputs/demo/fourm", "outputs/demo/processor"
TILE_SIZE = 256
RGB_FAMILIES = ("rgb", "tok_rgb")
# System fonts only: the page renders the same offline (the default theme loads Google Fonts).
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
PROGRESS = gr.Progress(track_tqdm=True)  # Gradio finds it among the handler's defaults; it follows generate's tqdm bar


@dataclasses.dataclass
class Generation:
    """What one press of Generate produced: the recipe and its config, the decoded modalities (the image input
    included), the `plot_modalities` grid, one `(tile, name)` per non-text target, the text outputs and a status
    line."""

    recipe: str
    config: FourMGenerationConfig
    decoded: dict[str, Any]
    grid: Image.Image
    tiles: list[tuple[Image.Image, str]]
    text: str
    status: str


def ordered_targets(model: FourMForMaskedModeling, names: Sequence[str]) -> list[str]:
    """`names` in the recipes' generation order (the families' `generation_order`, then the model's decoder order):
    image modalities before the sequences conditioned on them."""
    decoders = model.config.decoder_modalities

    def key(name: str) -> tuple[bool, int, int]:
        order = model.config.modality(name).family.generation_order
        return order is None, order or 0, decoders.index(name)

    return sorted(names, key=key)


def default_targets(model: FourMForMaskedModeling, processor: FourMProcessor) -> list[str]:
    """What an image -> all run generates: every decoder modality except RGB tokens at the image's resolution."""
    size = processor.image_processor.image_size
    return [
        name
        for name in model.config.decoder_modalities
        if not (model.config.modality(name).family.name == "tok_rgb" and model.config.modality(name).image_size == size)
    ]


def _rounded(value: Any) -> Any:
    """`value` with its floats (in dicts, lists and tuples) rounded to 3 decimals."""
    if isinstance(value, (float, np.floating)):
        return round(float(value), 3)
    if isinstance(value, Mapping):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


def sample_text(value: Any) -> str:
    """A decoded sequence sample as one line: captions as they are, structured samples (boxes, metadata) as JSON
    with 3 decimals."""
    return value if isinstance(value, str) else json.dumps(_rounded(value), default=str)


def run(
    model: FourMForMaskedModeling,
    processor: FourMProcessor,
    image: np.ndarray | None,
    caption: str | None,
    targets: Sequence[str],
    seed: int,
    progress: Callable[..., Any] | None = None,
) -> Generation:
    """Generate `targets` from an image and / or a caption with the model's recipe and decode them.

    Raises `ValueError` saying what to change when there is no input, no target, or an input the model does not take.
    """
    progress = progress or (lambda *args, **kwargs: None)
    caption = (caption or "").strip()
    config = model.config
    inputs: dict[str, Any] = {}
    if image is not None:
        if processor.pixel_modality not in config.encoder_modalities:
            raise ValueError(f"This model takes no image input ({processor.pixel_modality}); type a caption instead.")
        inputs[processor.pixel_modality] = [np.asarray(image)]
    if caption:
        if "caption" not in config.encoder_modalities:
            raise ValueError(f"This model takes no caption; its inputs are {config.encoder_modalities}.")
        inputs["caption"] = [caption]
    if not inputs:
        raise ValueError("Upload an image or type a caption first.")
    given = [name for name in targets if name in inputs]
    targets = ordered_targets(model, [name for name in targets if name not in inputs])
    if not targets:
        raise ValueError("Choose at least one target modality that is not an input.")

    recipe = "rgb_to_all" if image is not None else "caption_to_all"
    generation_config = getattr(FourMGenerationConfig, recipe)(config, conditions=list(inputs), targets=targets)
    progress(0, desc="Encoding the inputs")
    start = time.perf_counter()
    with torch.no_grad():
        batch = processor(inputs=inputs)
        output = model.generate(batch, generation_config, seed=seed, progress_bar=True)
        progress(1, desc="Decoding the outputs")
        shown = [processor.pixel_modality] if image is not None else []
        decoded = processor.postprocess(output, names=shown + targets)
    seconds = time.perf_counter() - start

    rgb = next((v[0] for n, v in decoded.items() if config.modality(n).family.name in RGB_FAMILIES), None)
    background = render_image(rgb, None, TILE_SIZE) if rgb is not None else None
    tiles, lines = [], []
    for name in targets:
        value = decoded[name][0]
        if config.modality(name).kind == "sequence":
            lines.append(f"{name}: {sample_text(value)}")
        if not isinstance(value, str):
            tiles.append((config.modality(name).family.function("render")(value, background, TILE_SIZE), name))
    grid = plot_modalities(decoded, tile_size=TILE_SIZE, columns=min(4, len(decoded)))
    status = f"`{recipe}` from {', '.join(inputs)} -> {', '.join(targets)} (seed {seed}) in {seconds:.1f} s."
    if given:
        status += f" Not generated, given as input: {', '.join(given)}."
    return Generation(recipe, generation_config, decoded, grid, tiles, "\n".join(lines), status)


def build_app(model: FourMForMaskedModeling, processor: FourMProcessor, seed: int = 0) -> gr.Blocks:
    """The Gradio page: inputs (image, caption), target checkboxes (the model's decoder modalities), seed, Generate;
    outputs (status, generated text, one tile per non-text target, the grid). Elements carry `elem_id`s for tests:
    input-image, caption, targets, seed, generate, status, text, tiles, grid."""
    model.eval()
    config = model.config
    with gr.Blocks(title="4M any-to-any", analytics_enabled=False) as app:
        gr.Markdown(
            "# 4M: any-to-any generation\n"
            f"Inputs: {', '.join(config.encoder_modalities)}. Targets: {', '.join(config.decoder_modalities)}. "
            "Upload an image (RGB -> all) or type a caption (caption -> all), choose targets, press Generate."
        )
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(
                    label="Image", type="numpy", sources=["upload", "clipboard"], height=256, elem_id="input-image"
                )
                caption = gr.Textbox(label="Caption", placeholder="a red cube on a gray floor", elem_id="caption")
                targets = gr.CheckboxGroup(
                    choices=config.decoder_modalities, value=default_targets(model, processor),
                    label="Target modalities", elem_id="targets",
                )  # fmt: skip
                seed_box = gr.Number(value=seed, precision=0, label="Seed", elem_id="seed")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                text = gr.Textbox(label="Generated text", lines=2, interactive=False, elem_id="text")
                tiles = gr.Gallery(
                    label="Per modality", columns=4, fit_columns=False, height=280, object_fit="contain",
                    format="png", interactive=False, elem_id="tiles",
                )  # fmt: skip
                grid = gr.Image(label="All modalities", type="pil", format="png", interactive=False, elem_id="grid")

        def on_generate(image_value, caption_value, target_values, seed_value, progress=PROGRESS):
            try:
                result = run(
                    model, processor, image_value, caption_value, target_values,
                    seed if seed_value is None else int(seed_value), progress,
                )  # fmt: skip
            except ValueError as error:
                raise gr.Error(str(error)) from error
            return result.status, result.text, result.tiles, result.grid

        button.click(on_generate, [image, caption, targets, seed_box], [status, text, tiles, grid])
    return app


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="4M web demo (Gradio).", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="4M checkpoint folder or Hub id")
    parser.add_argument("--processor", default=DEFAULT_PROCESSOR, help="FourMProcessor folder or Hub id")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--seed", type=int, default=0, help="the seed the page starts with")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be in [1, 65535], got {args.port}")
    return args


LOAD_HINT = (
    "Train and save the demo's model first with `python examples/demo.py` (it writes outputs/demo/fourm and "
    "outputs/demo/processor), or pass --model and --processor (checkpoint folders or Hub ids)."
)


def _exit(message: str) -> NoReturn:
    print(f"error: {message}\n{LOAD_HINT}", file=sys.stderr)
    raise SystemExit(1)


def load(model_path: str, processor_path: str) -> tuple[FourMForMaskedModeling, FourMProcessor]:
    """The model and processor; on stderr how to make them, and `SystemExit(1)`, when they cannot be loaded. A path
    that does not exist and does not look like a Hub id (`owner/name`) is reported without trying the Hub."""
    for what, path in (("model", model_path), ("processor", processor_path)):
        if not Path(path).exists() and (path.count("/") != 1 or path.startswith((".", "/", "~"))):
            _exit(f"the {what} {path!r} does not exist.")
    try:
        model = FourMForMaskedModeling.from_pretrained(model_path)
        processor = FourMProcessor.from_pretrained(processor_path)
    except (OSError, ValueError) as error:
        _exit(f"cannot load the model {model_path!r} / processor {processor_path!r}: {error}")
    return model, processor


def main(argv: Sequence[str] | None = None, block: bool = True) -> gr.Blocks:
    """Load, build and serve the app. With `block=False` return the running app at once (`app.close()` stops it)."""
    args = parse_args(argv)
    model, processor = load(args.model, args.processor)
    app = build_app(model, processor, seed=args.seed)
    app.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=not block, theme=THEME)
    return app


if __name__ == "__main__":
    main()
