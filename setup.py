from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="fourm_hf",
    version="0.1.0",
    description="4M (Massively Multimodal Masked Modeling) as a native Hugging Face transformers package",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["fourm_hf", "fourm_hf.*"]),
    package_data={"fourm_hf": ["data/mixtures/*.json"]},
    install_requires=[
        "torch>=2.4",
        "transformers>=5.23,<6",  # 5.0-5.17 fail to import here; the tests use 5.23 APIs
        "tokenizers>=0.22",
        "huggingface-hub>=1.0",
        "safetensors>=0.4",
        "accelerate>=1.1",
        "datasets>=3.0",
        "evaluate>=0.4",
        "numpy",
        "Pillow",
        "tqdm",
    ],
    extras_require={
        "train": ["scikit-learn", "PyYAML"],
        "peft": ["peft"],
        "app": ["gradio"],
        "dev": ["pytest", "hypothesis", "scikit-learn", "PyYAML", "peft", "gradio", "selenium"],
    },
)
