"""examples/app.py, the Gradio web demo: the generation behind the page (the model's recipes restricted to the chosen
targets, the same outputs as the Python API), the command line, and the page itself driven in a real headless
Chromium (upload an image, choose two targets, Generate, read the rendered outputs back)."""

import io
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import imported_script, restored_registry, tiny_any_to_any
from PIL import Image

from fourm_hf import (
    FourMConfig,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    register_modality,
)

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "app.py"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "tests" / "artifacts" / "app.png"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1300",
)  # fmt: skip
DEPTH, PIXELS = "tok_depth@32", "rgb@32"
# Every text Gradio's progress indicators show, however briefly (a tiny model generates in well under a second).
RECORD_PROGRESS = """
window.progressTexts = [];
new MutationObserver(() => document.querySelectorAll('[data-testid="status-tracker"]').forEach(
    tracker => window.progressTexts.push(tracker.textContent.trim()))
).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def app_module():
    with imported_script(APP, "fourm_app") as module:
        yield module


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained 4M (RGB pixels, depth tokens, caption and boxes at 32 px) and its processor, saved; the
    registry is restored afterwards."""
    with restored_registry():
        model, processor = tiny_any_to_any()
        root = tmp_path_factory.mktemp("app_checkpoint")
        model.save_pretrained(root / "fourm")
        processor.save_pretrained(root / "processor")
        yield {"model": model, "processor": processor, "root": root}


def _image() -> np.ndarray:
    return (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)


def _api(model, processor, recipe: str, batch: dict, targets: list[str], seed: int = 0) -> dict:
    """What the Python API generates with the model's recipe, for comparison with the app."""
    config = getattr(FourMGenerationConfig, recipe)(model.config, targets=targets)
    return processor.postprocess(model.generate(batch, config, seed=seed, progress_bar=False), names=targets)


def test_an_image_runs_rgb_to_all_on_the_chosen_targets_as_the_api_does(app_module, checkpoint):
    model, processor = checkpoint["model"], checkpoint["processor"]
    calls = []
    result = app_module.run(model, processor, _image(), "", ["det", "caption", DEPTH], seed=3,
                            progress=lambda *args, **kwargs: calls.append(kwargs["desc"]))  # fmt: skip
    assert result.recipe == "rgb_to_all" and result.config.conditions == [PIXELS]
    assert [t.modality for t in result.config.targets] == [DEPTH, "caption", "det"]  # the recipes' order
    assert calls == ["Encoding the inputs", "Decoding the outputs"]
    expected = _api(model, processor, "rgb_to_all", processor(images=[_image()]), [DEPTH, "caption", "det"], seed=3)
    np.testing.assert_array_equal(result.decoded[DEPTH], expected[DEPTH])
    assert result.decoded["caption"] == expected["caption"] and result.decoded["det"] == expected["det"]
    assert list(result.decoded) == [PIXELS, DEPTH, "caption", "det"]  # the input image is shown too
    # one tile per non-text target; the caption (and the boxes, as JSON) in the text
    assert [name for _, name in result.tiles] == [DEPTH, "det"]
    assert all(tile.size == (app_module.TILE_SIZE, app_module.TILE_SIZE) for tile, _ in result.tiles)
    assert result.text.splitlines()[0] == f"caption: {expected['caption'][0]}"
    assert result.text.splitlines()[1].startswith('det: {"boxes": ')
    assert result.grid.size == (4 * app_module.TILE_SIZE, app_module.TILE_SIZE + 20)
    assert "`rgb_to_all` from rgb@32 -> tok_depth@32, caption, det (seed 3)" in result.status


def test_a_caption_alone_runs_caption_to_all_and_is_not_regenerated(app_module, checkpoint):
    model, processor = checkpoint["model"], checkpoint["processor"]
    result = app_module.run(model, processor, None, "  a red cube ", [DEPTH, "caption"], seed=0)
    assert result.recipe == "caption_to_all" and result.config.conditions == ["caption"]
    assert [t.modality for t in result.config.targets] == [DEPTH]
    expected = _api(model, processor, "caption_to_all", processor(text=["a red cube"]), [DEPTH])
    np.testing.assert_array_equal(result.decoded[DEPTH], expected[DEPTH])
    assert list(result.decoded) == [DEPTH] and result.text == ""
    assert result.status.endswith("Not generated, given as input: caption.")
    # with an image too, the caption is an extra condition of the RGB recipe
    both = app_module.run(model, processor, _image(), "a red cube", [DEPTH], seed=0)
    assert both.recipe == "rgb_to_all" and both.config.conditions == [PIXELS, "caption"]


def test_run_says_what_is_missing(app_module, checkpoint):
    model, processor = checkpoint["model"], checkpoint["processor"]
    with pytest.raises(ValueError, match="Upload an image or type a caption first"):
        app_module.run(model, processor, None, "   ", [DEPTH], seed=0)
    with pytest.raises(ValueError, match="Choose at least one target modality that is not an input"):
        app_module.run(model, processor, None, "a cube", ["caption"], seed=0)
    with pytest.raises(ValueError, match="Choose at least one target"):
        app_module.run(model, processor, _image(), "", [], seed=0)


def test_structured_samples_are_shown_as_json_with_three_decimals(app_module):
    det = {"boxes": [(0.123456, np.float32(0.5), 1.0, 0.9996)], "labels": ["cube"]}
    assert app_module.sample_text(det) == '{"boxes": [[0.123, 0.5, 1.0, 1.0]], "labels": ["cube"]}'
    assert app_module.sample_text("a red cube 0.123456") == "a red cube 0.123456"  # text is left as it is


def test_default_targets_skip_rgb_tokens_at_the_image_resolution(app_module, checkpoint):
    register_modality("tok_rgb@32", patch_size=8, overwrite=True)
    register_modality("tok_rgb@64", patch_size=8, overwrite=True)
    config = FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=2,
        encoder_modalities=[PIXELS, "caption"], decoder_modalities=["tok_rgb@32", "tok_rgb@64", DEPTH, "caption"],
    )  # fmt: skip
    model = FourMForMaskedModeling(config)
    assert app_module.default_targets(model, checkpoint["processor"]) == ["tok_rgb@64", DEPTH, "caption"]
    assert app_module.default_targets(checkpoint["model"], checkpoint["processor"]) == [DEPTH, "caption", "det"]


def test_command_line_help_shows_defaults(app_module, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--model", "outputs/demo/fourm"), ("--processor", "outputs/demo/processor"),
                          ("--host", "127.0.0.1"), ("--port", "7860"), ("--seed", "0")):  # fmt: skip
        assert flag in help_text and f"(default: {default})" in help_text
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["--port", "0"])
    assert exit_info.value.code == 2 and "--port must be in [1, 65535], got 0" in capsys.readouterr().err


def test_missing_checkpoints_say_how_to_make_them(app_module, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default paths are relative to the working directory: absent here
    (tmp_path / "empty").mkdir()
    for argv, message in (
        ([], "the model 'outputs/demo/fourm' does not exist."),
        (["--model", "empty", "--processor", "nothing/here/x"], "the processor 'nothing/here/x' does not exist."),
        (["--model", "empty", "--processor", "empty"], "cannot load the model 'empty' / processor 'empty'"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            app_module.main(argv)
        error = capsys.readouterr().err
        assert exit_info.value.code == 1
        assert error.startswith(f"error: {message}") and "`python examples/demo.py`" in error, error


@pytest.fixture
def browser(tmp_path):
    """Headless Debian Chromium driven by selenium through chromedriver, with a new empty profile."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"no browser: {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_page_generates_in_a_headless_browser(app_module, checkpoint, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root, port = checkpoint["root"], _free_port()
    argv = ["--model", str(root / "fourm"), "--processor", str(root / "processor"), "--port", str(port)]
    app = app_module.main(argv, block=False)
    try:
        wait = WebDriverWait(browser, 30, poll_frequency=0.1)
        browser.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#generate"))
        boxes = browser.find_elements(By.CSS_SELECTOR, "#targets input[type=checkbox]")
        assert [b.get_attribute("name") for b in boxes] == [DEPTH, "caption", "det"]  # the model's decoders

        # Generate without an input: the app's message in an error toast
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: "Upload an image or type a caption first" in d.find_element(By.TAG_NAME, "body").text)

        # upload an image, keep two targets (depth and caption), generate
        Image.fromarray(_image()).save(tmp_path / "input.png")
        browser.find_element(By.CSS_SELECTOR, "#input-image input[type=file]").send_keys(str(tmp_path / "input.png"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#input-image img"))
        for box in boxes:
            if box.is_selected() != (box.get_attribute("name") in (DEPTH, "caption")):
                box.click()
        assert [b.get_attribute("name") for b in boxes if b.is_selected()] == [DEPTH, "caption"]
        browser.execute_script(RECORD_PROGRESS)
        browser.find_element(By.ID, "generate").click()

        def loaded(selector: str) -> list:
            images = browser.find_elements(By.CSS_SELECTOR, selector)
            ready = "return arguments[0].complete && arguments[0].naturalWidth > 0"
            return images if images and all(browser.execute_script(ready, image) for image in images) else []

        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#text textarea").get_attribute("value"))
        grid, tiles = wait.until(lambda d: loaded("#grid img")), wait.until(lambda d: loaded("#tiles img"))
        text = browser.find_element(By.CSS_SELECTOR, "#text textarea").get_attribute("value")
        status = browser.find_element(By.ID, "status").text
        progress = browser.execute_script("return window.progressTexts")
        tile_names = [tile.get_attribute("alt") for tile in tiles]
        grid_width = browser.execute_script("return arguments[0].naturalWidth", grid[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the served PNG, straight from the app
        served_tile = Image.open(io.BytesIO(opener.open(tiles[0].get_attribute("src"), timeout=10).read()))
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))
        viewport = browser.execute_script("return [window.innerWidth, window.innerHeight]")
        print(f"screenshot of the page: {SCREENSHOT}")
    finally:
        app.close()

    # the page shows what the Python API generates from the same image and seed
    model, processor = checkpoint["model"], checkpoint["processor"]
    expected = _api(model, processor, "rgb_to_all", processor(images=[_image()]), [DEPTH, "caption"])
    assert text == f"caption: {expected['caption'][0]}" and expected["caption"][0]
    assert "rgb_to_all" in status and "from rgb@32 -> tok_depth@32, caption (seed 0)" in status
    assert any("4M generation" in line for line in progress), progress  # the bar follows generate's steps
    assert tile_names == [DEPTH] and grid_width == 3 * app_module.TILE_SIZE  # input, depth, caption
    render = model.config.modality(DEPTH).family.function("render")
    expected_tile = render(expected[DEPTH][0], None, app_module.TILE_SIZE).convert("RGB")
    np.testing.assert_array_equal(np.asarray(served_tile.convert("RGB")), np.asarray(expected_tile))
    assert Image.open(SCREENSHOT).size == tuple(viewport)
