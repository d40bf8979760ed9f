"""fourm_hf: 4M, the any-to-any multimodal masked model, as a Hugging Face transformers package.

Importing the package registers its configs and models with the transformers Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from .configuration_fourm import FourMConfig
from .modalities import MODALITIES, ModalityInfo, get_modality, modality_id, register_modality
from .modeling_fourm import (
    FourMEncoderModel,
    FourMEncoderOutput,
    FourMForMaskedModeling,
    FourMMaskedModelingOutput,
    FourMPreTrainedModel,
)

__version__ = "0.1.0"

AutoConfig.register(FourMConfig.model_type, FourMConfig, exist_ok=True)
AutoModel.register(FourMConfig, FourMForMaskedModeling, exist_ok=True)
AutoModelForMaskedLM.register(FourMConfig, FourMForMaskedModeling, exist_ok=True)

__all__ = [
    "MODALITIES",
    "FourMConfig",
    "FourMEncoderModel",
    "FourMEncoderOutput",
    "FourMForMaskedModeling",
    "FourMMaskedModelingOutput",
    "FourMPreTrainedModel",
    "ModalityInfo",
    "get_modality",
    "modality_id",
    "register_modality",
]
