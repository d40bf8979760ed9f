"""Loading: save / reload of every public model class through its Auto class, `name_or_path` of official-layout
loads, and the package's import graph (no cycles among module-level imports, no package imports inside functions)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, load_materializer
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForDepthEstimation,
    AutoModelForImageClassification,
    AutoModelForMaskedLM,
    AutoModelForSemanticSegmentation,
)

import fourm_hf
from fourm_hf import (
    FourMConfig,
    FourMDiVAE,
    FourMDiVAEConfig,
    FourMEncoderModel,
    FourMForDepthEstimation,
    FourMForImageClassification,
    FourMForMaskedModeling,
    FourMForSemanticSegmentation,
    FourMVQVAE,
    FourMVQVAEConfig,
    load_vq_model,
)

# ----------------------------------------------------------------------------------------------------------------
# Save / reload through the Auto classes


def tiny_fourm_config() -> FourMConfig:
    return FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=2,
        encoder_modalities=["rgb@224", "caption"], decoder_modalities=["caption"], num_labels=3, head_hidden_size=8,
    )


TINY_VQ = dict(
    image_size=32, patch_size=8, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2, codebook_size=16,
    latent_dim=8,
)
CASES = {
    FourMForMaskedModeling: (AutoModelForMaskedLM, tiny_fourm_config),
    FourMEncoderModel: (AutoModel, tiny_fourm_config),
    FourMForImageClassification: (AutoModelForImageClassification, tiny_fourm_config),
    FourMForSemanticSegmentation: (AutoModelForSemanticSegmentation, tiny_fourm_config),
    FourMForDepthEstimation: (AutoModelForDepthEstimation, tiny_fourm_config),
    FourMVQVAE: (AutoModel, lambda: FourMVQVAEConfig(**TINY_VQ, decoder_hidden_size=32, decoder_num_layers=1,
                                                     decoder_num_heads=2)),
    FourMDiVAE: (AutoModel, lambda: FourMDiVAEConfig(**TINY_VQ, unet_channels=16, unet_channel_mult=(1, 2),
                                                     unet_num_res_blocks=1, unet_attention_resolutions=(2,),
                                                     unet_norm_groups=8)),
}


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with noise on every floating-point tensor, so that a reload which re-initialises instead of loading
    (zero-initialised layers, fixed sin-cos tables) cannot pass for a bit-exact one."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))
    return model


def assert_same_state(actual: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = actual.state_dict()
    assert state.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key


@pytest.mark.parametrize("model_class", list(CASES), ids=lambda c: c.__name__)
def test_save_and_reload_through_the_auto_class_is_bit_exact(model_class, tmp_path):
    auto_class, make_config = CASES[model_class]
    torch.manual_seed(0)
    model = perturbed(model_class(make_config()))
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is model_class.config_class
    reloaded = auto_class.from_pretrained(tmp_path)
    assert type(reloaded) is model_class
    assert_same_state(reloaded, model.state_dict())
    assert reloaded.name_or_path == str(tmp_path)


@pytest.mark.parametrize("head_class", [FourMForMaskedModeling, FourMForImageClassification])
def test_auto_model_gives_the_encoder_of_any_4m_checkpoint(head_class, tmp_path):
    torch.manual_seed(0)
    model = perturbed(head_class(tiny_fourm_config()))
    model.save_pretrained(tmp_path)
    encoder = AutoModel.from_pretrained(tmp_path)
    assert type(encoder) is FourMEncoderModel
    assert_same_state(encoder, {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")})


def test_vq_model_of_the_wrong_class_is_refused(tmp_path):
    FourMVQVAE(CASES[FourMVQVAE][1]()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"holds a FourMVQVAE VQ model; load it with FourMVQVAE, not FourMDiVAE"):
        FourMDiVAE.from_pretrained(tmp_path)
    assert type(load_vq_model(tmp_path)) is FourMVQVAE


def test_checkpoint_of_another_model_type_is_refused(official_checkpoints):
    with pytest.raises(ValueError, match="is not a FourMVQVAE checkpoint: its config has model_type None, expected "
                                         "'fourm_vqvae'"):
        FourMVQVAE.from_pretrained(official_checkpoints["fm_4m7_style"])


# ----------------------------------------------------------------------------------------------------------------
# name_or_path of official-layout loads


@pytest.fixture(scope="module")
def official_vq_dir(tmp_path_factory) -> Path:
    materialize = load_materializer(FIXTURES / "official_tokenizers")
    return materialize("semseg_vqvae", tmp_path_factory.mktemp("official_vq") / "semseg_vqvae")


@pytest.mark.parametrize("layout", ["directory", "directory_as_path", "bare_file"])
def test_official_layout_load_keeps_the_name_it_was_given(official_checkpoints, layout):
    directory = official_checkpoints["fm_4m7_style"]
    source = {
        "directory": str(directory), "directory_as_path": directory, "bare_file": str(directory / "model.safetensors")
    }[layout]
    model = FourMForMaskedModeling.from_pretrained(source)
    assert model.name_or_path == model.config.name_or_path == model.config._name_or_path == str(source)
    classifier = FourMForImageClassification.from_pretrained(source, num_labels=2)
    assert classifier.name_or_path == classifier.config.name_or_path == str(source)


def test_official_vq_model_load_keeps_the_name_it_was_given(official_vq_dir):
    for model in (FourMVQVAE.from_pretrained(str(official_vq_dir)), load_vq_model(str(official_vq_dir))):
        assert model.name_or_path == model.config.name_or_path == str(official_vq_dir)


def test_lora_adapter_records_the_official_checkpoint_as_its_base(official_checkpoints):
    peft = pytest.importorskip("peft")
    source = str(official_checkpoints["fm_4m7_style"])
    model = FourMForImageClassification.from_pretrained(source, num_labels=2)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=fourm_hf.LORA_TARGET_MODULES))
    assert wrapped.peft_config["default"].base_model_name_or_path == source


# ----------------------------------------------------------------------------------------------------------------
# Import graph


@dataclass(frozen=True)
class Import:
    """An import of a package module by a package module."""

    source: str
    target: str
    line: int
    in_function: bool
    type_checking: bool


def module_names(root: Path) -> dict[str, Path]:
    """`{dotted module name: file}` of every module of the package at `root` (`pkg/__init__.py` is `pkg`)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    node: ast.AST, in_function: bool = False, type_checking: bool = False
) -> Iterator[tuple[ast.AST, bool, bool]]:
    """Every import statement under `node`, with whether it sits in a function body / an `if TYPE_CHECKING:` block."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function, type_checking
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), in_function, True)
            for statement in child.orelse:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), in_function, type_checking)
        else:
            function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from _walk(child, in_function or function, type_checking)


def _imported_modules(node: ast.AST, importer: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The package modules one import statement executes: the named module or submodule, and those of its parent
    packages that are not already being imported as parents of the importer."""
    if isinstance(node, ast.Import):
        named = {alias.name for alias in node.names}
    else:
        if node.level:
            base = importer if is_package else importer.rpartition(".")[0]
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module
        # `from pkg import name` imports the submodule pkg.name if there is one, else an attribute of pkg's __init__
        named = {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    executed = set()
    for name in named:
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            already_running = importer == prefix or importer.startswith(prefix + ".")
            if prefix in modules and (prefix == name or not already_running):
                executed.add(prefix)
    return executed


def package_imports(root: Path) -> list[Import]:
    """Every import of a module of the package at `root` by another of its modules, module-level or not."""
    modules = module_names(root)
    imports = []
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, in_function, type_checking in _walk(tree):
            for target in sorted(_imported_modules(node, importer, path.name == "__init__.py", modules)):
                imports.append(Import(importer, target, node.lineno, in_function, type_checking))
    return imports


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """The strongly connected components with a cycle (Tarjan) of the module-level, run-time import graph."""
    graph: dict[str, set[str]] = {}
    for edge in imports:
        if not edge.in_function and not edge.type_checking:
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "pkg"


def test_import_graph_resolves_relative_imports_packages_and_contexts(tmp_path):
    package = write_package(tmp_path, {
        "pkg/__init__.py": "from .a import A\n",
        "pkg/a.py": "from .b import B\nA = 1\n",
        "pkg/b.py": "from . import c\nB = 2\n",  # the submodule pkg.c, not pkg's __init__
        "pkg/c.py": (
            "from typing import TYPE_CHECKING\nimport os\nif TYPE_CHECKING:\n    from .a import A\n"
            "def f():\n    from .a import A\n    return A\n"
        ),
        "pkg/sub/__init__.py": "from .d import D\n",  # relative to pkg.sub itself
        "pkg/sub/d.py": "from .. import a\nD = 3\n",
        "pkg/e.py": "import pkg.sub.d\n",  # runs pkg.sub's __init__ too
    })
    imports = package_imports(package)
    edges = {(i.source, i.target) for i in imports if not i.in_function and not i.type_checking}
    assert edges == {
        ("pkg", "pkg.a"), ("pkg.a", "pkg.b"), ("pkg.b", "pkg.c"), ("pkg.sub", "pkg.sub.d"), ("pkg.sub.d", "pkg.a"),
        ("pkg.e", "pkg.sub"), ("pkg.e", "pkg.sub.d"),
    }
    assert [(i.source, i.target, i.line) for i in imports if i.in_function] == [("pkg.c", "pkg.a", 6)]
    assert [(i.source, i.target, i.line) for i in imports if i.type_checking] == [("pkg.c", "pkg.a", 4)]
    assert import_cycles(imports) == []


def test_import_cycles_are_found_through_package_inits(tmp_path):
    package = write_package(tmp_path, {
        "pkg/__init__.py": "from .a import A\n",
        "pkg/a.py": "from . import helper\nA = 1\n",  # an attribute of pkg's __init__: runs pkg
        "pkg/b.py": "from .c import C\nB = 1\n",
        "pkg/c.py": "from pkg.b import B\nC = 1\n",
    })
    assert import_cycles(package_imports(package)) == [["pkg", "pkg.a"], ["pkg.b", "pkg.c"]]


def test_fourm_hf_has_no_import_cycles_and_no_imports_inside_functions():
    imports = package_imports(Path(fourm_hf.__file__).parent)
    assert len({i.source for i in imports}) > 20  # the graph covers the package
    assert import_cycles(imports) == []
    in_functions = [f"{i.source}:{i.line} imports {i.target}" for i in imports if i.in_function]
    assert in_functions == []
