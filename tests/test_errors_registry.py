"""Bad inputs to the modality registry (register_modality, register_family, ModalitySpec, ModalityFamily, get_modality,
get_family) and to the shared argument checks: each raises a clear error that names the culprit."""

import pytest

from fourm_hf import ModalityFamily, get_family, get_modality, register_family, register_modality
from fourm_hf.checks import check_choice, check_int, check_number, check_training_arguments, close_match
from fourm_hf.modalities import ModalitySpec, VQModelPreset, build_spec, spec_from_dict


def bare_family(**fields):
    return ModalityFamily(**{"name": "tok_bare", "kind": "image_tokens", **fields})


@pytest.mark.parametrize(
    "call, error, message",
    [
        # integers: floats (even whole ones) and bools are refused, with the integer-division hint
        (
            lambda: register_modality("tok_depth@224", image_size=448 / 2),
            TypeError,
            r"'tok_depth@224': image_size must be an integer, got float 224.0 \(use // for integer division",
        ),
        (
            lambda: register_modality("tok_depth@64", patch_size=8.0),
            TypeError,
            r"patch_size must be an integer, got float",
        ),
        (
            lambda: register_modality("tok_depth@64", patch_size=True),
            TypeError,
            r"patch_size must be an integer, got bool",
        ),
        (
            lambda: register_modality("tok_depth@64", vocab_size="8192"),
            TypeError,
            r"vocab_size must be an integer, got str",
        ),
        (lambda: register_modality("caption", max_length=12.5), TypeError, r"'caption': max_length must be an integer"),
        (
            lambda: register_modality("caption", max_tokens=None, max_length=True),
            TypeError,
            "max_length must be an integer",
        ),
        (
            lambda: register_modality("rgb@64", num_channels=3.0),
            TypeError,
            r"'rgb@64': num_channels must be an integer",
        ),
        # out of range
        (lambda: register_modality("tok_depth@64", vocab_size=0), ValueError, r"vocab_size must be >= 1, got 0"),
        (lambda: register_modality("tok_depth@64", patch_size=-8), ValueError, r"patch_size must be >= 1, got -8"),
        (
            lambda: register_modality("caption", max_length=600),
            ValueError,
            r"max_length must be in \[1, 512\], got 600",
        ),
        (
            lambda: register_modality("caption", max_tokens=513),
            ValueError,
            r"'caption': max_tokens must be <= 512, got 513",
        ),
        (
            lambda: register_modality("tok_depth@64", patch_size=128),
            ValueError,
            r"image_size \(64\) must be a positive multiple of patch_size \(128\)",
        ),
        (
            lambda: register_modality("tok_depth@100"),
            ValueError,
            r"image_size \(100\) must be a positive multiple of patch_size \(16\)",
        ),
        # names
        (
            lambda: register_modality("my modality", "sequence", vocab_size=10, max_length=8),
            ValueError,
            r"non-empty string without spaces or '\.', got 'my modality'",
        ),
        (lambda: register_modality("", "sequence", vocab_size=10, max_length=8), ValueError, "non-empty string"),
        (
            lambda: register_modality("tok.depth@64", "image_tokens", vocab_size=10, patch_size=8),
            ValueError,
            "without spaces or '.'",
        ),
        (lambda: register_modality(42, "sequence"), TypeError, "A modality name is a string, got int 42"),
        (
            lambda: register_modality("tok_depth@6x4"),
            ValueError,
            r"the part after '@' must be a positive resolution.*'tok_depth@224'",
        ),
        (lambda: register_modality("tok_depth@0"), ValueError, "positive resolution"),
        (lambda: register_modality("tok_depth"), ValueError, r"needs a resolution: name it 'tok_depth@<size>'"),
        (
            lambda: register_modality("tok_depth@64", image_size=128),
            ValueError,
            r"the name says 64 pixels but image_size=128; name it 'tok_depth@128'",
        ),
        (
            lambda: register_modality("caption@64"),
            ValueError,
            r"'caption@64' \(sequence\) has no resolution.*name it 'caption'",
        ),
        # fields that the kind does not use would be ignored: refused
        (lambda: register_modality("tok_depth@64", max_length=6), ValueError, r"\(image_tokens\) has no max_length"),
        (lambda: register_modality("caption", patch_size=16), ValueError, r"'caption' \(sequence\) has no patch_size"),
        (lambda: register_modality("rgb@64", vocab_size=10), ValueError, r"'rgb@64' \(pixels\) has no vocab_size"),
        (
            lambda: register_modality("tok_depth@64", learned_position_embedding="yes"),
            TypeError,
            "learned_position_embedding must be True or False",
        ),
        # unknown kinds, fields, families and modalities, with the close match
        (
            lambda: register_modality("tok_foo@64", "image_token", vocab_size=10, patch_size=8),
            ValueError,
            r"kind must be one of .*got 'image_token'\. Did you mean 'image_tokens'\?",
        ),
        (
            lambda: register_modality("tok_depth@64", pach_size=8),
            TypeError,
            r"unknown fields \['pach_size'\].*Did you mean 'patch_size'\?",
        ),
        (
            lambda: register_modality("tok_mystery@32"),
            ValueError,
            "family 'tok_mystery' is not registered; give its kind",
        ),
        (
            lambda: register_modality("tok_depth@64", family="tok_dpeth"),
            ValueError,
            r"Unknown modality family 'tok_dpeth'\. Did you mean 'tok_depth'\?",
        ),
        (
            lambda: register_modality("tok_depth@64", family=3),
            TypeError,
            "family must be a ModalityFamily or a family name",
        ),
        (
            lambda: register_modality("tok_depth@64", family="caption"),
            ValueError,
            "must be named after its family 'caption'",
        ),
        (lambda: register_modality("tok_depth@64", overwrite="yes"), TypeError, "overwrite must be True or False"),
        (
            lambda: get_modality("tok_dpeth@224"),
            ValueError,
            r"Unknown modality 'tok_dpeth@224'\. Did you mean 'tok_depth@224'\?",
        ),
        (lambda: get_modality("captoin"), ValueError, r"Did you mean 'caption'\?"),
        (lambda: get_modality(None), TypeError, "A modality name is a string, got NoneType"),
        (
            lambda: get_family("tok_semsg"),
            ValueError,
            r"Unknown modality family 'tok_semsg'\. Did you mean 'tok_semseg'\?",
        ),
        (lambda: get_family(["caption"]), TypeError, "A family name is a string, got list"),
        # families
        (lambda: bare_family(kind="tokens"), ValueError, r"Family 'tok_bare': kind must be one of"),
        (lambda: bare_family(name="tok bare"), ValueError, "family name is a non-empty string without spaces"),
        (lambda: bare_family(name="tok_bare@64"), ValueError, r"A family name has no '@'.*use 'tok_bare'"),
        (
            lambda: bare_family(defaults=[("vocab_size", 8)]),
            TypeError,
            "defaults must be a dict of spec fields, got list",
        ),
        (
            lambda: bare_family(defaults={"vocab": 8}),
            ValueError,
            r"unknown spec defaults \['vocab'\].*Did you mean 'vocab_size'\?",
        ),
        (lambda: bare_family(render=42), TypeError, "render must be a function"),
        (
            lambda: bare_family(render="heat.render"),
            ValueError,
            "render as a reference is 'module:qualname', got 'heat.render'",
        ),
        (lambda: bare_family(boxes_follow_crops=1), TypeError, "boxes_follow_crops must be True or False"),
        (lambda: bare_family(generation_order=1.5), TypeError, "generation_order must be an integer"),
        (lambda: bare_family(vq_model="EPFL-VILAB/x"), TypeError, "vq_model must be a VQModelPreset, got str"),
        (lambda: bare_family(generation={"from_rgb": 4}), TypeError, r"generation must be a dict \{situation"),
        (lambda: bare_family(generation={"form_rgb": {}}), ValueError, "generation keys are 'from_rgb'"),
        (lambda: register_family("tok_depth"), TypeError, "register_family takes a ModalityFamily, got str"),
        (
            lambda: register_family(ModalityFamily("tok_depth", "sequence")),
            ValueError,
            "already registered differently",
        ),
        # specs built directly or loaded from a dict
        (
            lambda: ModalitySpec("tok_x@32", "image_tokens", "tok_x"),
            TypeError,
            "family must be a ModalityFamily, got str",
        ),
        (
            lambda: ModalitySpec("tok_bare@32", "sequence", bare_family(), vocab_size=4),
            ValueError,
            "is sequence but its family 'tok_bare' is image_tokens",
        ),
        (
            lambda: spec_from_dict("caption", ["vocab_size", 10]),
            TypeError,
            "saved spec of modality 'caption' must be a dict",
        ),
        (
            lambda: spec_from_dict("tok_x@32", {"kind": "image_tokens", "family": {"kind": "image_tokens"}}),
            ValueError,
            "saved modality family is a dict with at least 'name' and 'kind'",
        ),
        (lambda: build_spec("tok_depth@64", vocab_size=-1), ValueError, "vocab_size must be >= 1, got -1"),
    ],
)
def test_registry_rejects(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_valid_registrations_are_unchanged():
    depth = register_modality("tok_depth@64", patch_size=8)
    assert (depth.image_size, depth.num_tokens, depth.vocab_size) == (64, 64, 8192)
    assert register_modality("tok_depth@64", patch_size=8) == depth  # the same registration again is fine
    own = register_modality("tok_bare@32", family=bare_family(), vocab_size=4, patch_size=8)
    assert own.grid_size == 4 and own.family.name == "tok_bare"
    assert register_family(ModalityFamily("tok_bare", "image_tokens")) is not None
    assert get_modality("caption").max_tokens == 256
    assert VQModelPreset("x", "FourMVQVAE").hub_id == "x"


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: check_int(2.0, "num_crops", 1), TypeError, r"num_crops must be an integer, got float 2.0 \(use //"),
        (lambda: check_int(True, "seed"), TypeError, "seed must be an integer, got bool"),
        (lambda: check_int(0, "num_crops", 1), ValueError, "num_crops must be >= 1, got 0"),
        (lambda: check_int(9, "k", 1, 8), ValueError, r"k must be in \[1, 8\], got 9"),
        (lambda: check_number("0.1", "lr", 0), TypeError, "lr must be a number, got str"),
        (lambda: check_number(float("nan"), "lr", 0), ValueError, "lr must be a finite number, got nan"),
        (lambda: check_number(0.0, "lr", 0, open_minimum=True), ValueError, "lr must be > 0, got 0.0"),
        (lambda: check_number(1.0, "p", 0, 1, open_maximum=True), ValueError, r"p must be in \[0, 1\), got 1.0"),
        (
            lambda: check_choice("imagnet", "normalization", ("imagenet", "tokenizer")),
            ValueError,
            r"normalization must be one of \['imagenet', 'tokenizer'\], got 'imagnet'\. Did you mean 'imagenet'\?",
        ),
        (lambda: check_choice(["a"], "task", {"a"}), ValueError, r"task must be one of \['a'\], got \['a'\]"),
    ],
)
def test_shared_checks(call, error, message):
    with pytest.raises(error, match=message):
        call()


class Args:
    per_device_train_batch_size = per_device_eval_batch_size = gradient_accumulation_steps = 1
    max_steps, num_train_epochs, learning_rate, weight_decay = -1, 3.0, 1e-4, 0.0


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("per_device_train_batch_size", 0, ValueError, "--per_device_train_batch_size must be >= 1, got 0"),
        ("gradient_accumulation_steps", -2, ValueError, "--gradient_accumulation_steps must be >= 1"),
        ("max_steps", 0, ValueError, r"--max_steps must be a positive number of steps \(or -1"),
        ("max_steps", -5, ValueError, "--max_steps must be a positive number"),
        ("num_train_epochs", 0.0, ValueError, "--num_train_epochs must be > 0"),
        ("learning_rate", -1e-4, ValueError, "--learning_rate must be > 0"),
        ("learning_rate", float("inf"), ValueError, "--learning_rate must be a finite number"),
        ("weight_decay", -0.1, ValueError, "--weight_decay must be >= 0"),
    ],
)
def test_training_arguments_check(field, value, error, message):
    args = Args()
    setattr(args, field, value)
    with pytest.raises(error, match=message):
        check_training_arguments(args)


def test_checks_accept_valid_values():
    assert check_int(3, "n", 1) == 3 and check_number(0.5, "p", 0, 1) == 0.5
    assert (
        close_match("captoin", ["caption", "det"]) == " Did you mean 'caption'?" and close_match("zzz", ["det"]) == ""
    )
    check_training_arguments(Args())
