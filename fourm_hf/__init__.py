"""fourm_hf: 4M, the any-to-any multimodal masked model, as a Hugging Face transformers package.

Importing the package registers its configs and models with the transformers Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForDepthEstimation,
    AutoModelForImageClassification,
    AutoModelForMaskedLM,
    AutoModelForSemanticSegmentation,
    AutoProcessor,
    AutoTokenizer,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .data.masking import (
    FourMMaskingCollator,
    MaskingMixture,
    SeededMaskingDataset,
    available_mixtures,
    load_mixture,
)
from .data.sequences import SpecialTokens
from .evaluation.visualization import plot_modalities
from .generation.configuration_fourm_generation import FourMGenerationConfig, FourMTargetSchedule
from .generation.super_resolution import generate_with_super_resolution
from .generation.utils import FourMGenerateOutput, FourMGenerationMixin
from .modalities import (
    FAMILIES,
    MODALITIES,
    ModalityFamily,
    ModalitySpec,
    get_family,
    get_modality,
    modality_id,
    register_family,
    register_modality,
)
from .models.fourm.configuration_fourm import FourMConfig
from .models.fourm.image_processing_fourm import FourMImageProcessor
from .models.fourm.modeling_fourm import (
    FourMEncoderModel,
    FourMEncoderOutput,
    FourMForMaskedModeling,
    FourMMaskedModelingOutput,
    FourMPreTrainedModel,
)
from .models.fourm.modeling_fourm_tasks import (
    LORA_TARGET_MODULES,
    FourMForDepthEstimation,
    FourMForImageClassification,
    FourMForSemanticSegmentation,
    layer_decay_param_groups,
)
from .models.fourm.processing_fourm import FourMProcessor
from .models.fourm.tokenization_fourm import FourMTokenizer
from .models.fourm_vq.configuration_fourm_vq import FourMDiVAEConfig, FourMVQConfig, FourMVQVAEConfig
from .models.fourm_vq.loading import load_tokenizer, load_vq_model
from .models.fourm_vq.modeling_fourm_divae import FourMDiVAE, FourMDiVAEOutput
from .models.fourm_vq.modeling_fourm_vq import (
    FourMVQEncoderOutput,
    FourMVQPreTrainedModel,
    FourMVQVAE,
    FourMVQVAEOutput,
)
from .models.fourm_vq.scheduling_fourm_divae import FourMDDIMScheduler, FourMDDPMScheduler
from .pipelines import FourMAnyToAnyPipeline
from .pipelines import TASK as ANY_TO_ANY_TASK

__version__ = "0.1.0"

AutoConfig.register(FourMConfig.model_type, FourMConfig, exist_ok=True)
AutoModel.register(FourMConfig, FourMEncoderModel, exist_ok=True)
AutoConfig.register(FourMVQVAEConfig.model_type, FourMVQVAEConfig, exist_ok=True)
AutoConfig.register(FourMDiVAEConfig.model_type, FourMDiVAEConfig, exist_ok=True)
AutoModel.register(FourMVQVAEConfig, FourMVQVAE, exist_ok=True)
AutoModel.register(FourMDiVAEConfig, FourMDiVAE, exist_ok=True)
AutoModelForMaskedLM.register(FourMConfig, FourMForMaskedModeling, exist_ok=True)
AutoModelForImageClassification.register(FourMConfig, FourMForImageClassification, exist_ok=True)
AutoModelForSemanticSegmentation.register(FourMConfig, FourMForSemanticSegmentation, exist_ok=True)
AutoModelForDepthEstimation.register(FourMConfig, FourMForDepthEstimation, exist_ok=True)
AutoTokenizer.register(FourMConfig, fast_tokenizer_class=FourMTokenizer, exist_ok=True)
AutoImageProcessor.register(FourMConfig, image_processor_classes={"pil": FourMImageProcessor}, exist_ok=True)
AutoProcessor.register(FourMConfig, FourMProcessor, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(
    ANY_TO_ANY_TASK, pipeline_class=FourMAnyToAnyPipeline, pt_model=FourMForMaskedModeling, type="multimodal"
)

__all__ = [
    "ANY_TO_ANY_TASK",
    "FAMILIES",
    "LORA_TARGET_MODULES",
    "MODALITIES",
    "MaskingMixture",
    "FourMConfig",
    "FourMDDIMScheduler",
    "FourMDDPMScheduler",
    "FourMDiVAE",
    "FourMDiVAEConfig",
    "FourMDiVAEOutput",
    "FourMEncoderModel",
    "FourMAnyToAnyPipeline",
    "FourMEncoderOutput",
    "FourMForDepthEstimation",
    "FourMForImageClassification",
    "FourMForMaskedModeling",
    "FourMForSemanticSegmentation",
    "FourMGenerateOutput",
    "FourMGenerationConfig",
    "FourMGenerationMixin",
    "FourMImageProcessor",
    "FourMMaskedModelingOutput",
    "FourMMaskingCollator",
    "FourMPreTrainedModel",
    "FourMProcessor",
    "FourMTargetSchedule",
    "FourMTokenizer",
    "FourMVQConfig",
    "FourMVQEncoderOutput",
    "FourMVQPreTrainedModel",
    "FourMVQVAE",
    "FourMVQVAEConfig",
    "FourMVQVAEOutput",
    "ModalityFamily",
    "ModalitySpec",
    "SeededMaskingDataset",
    "SpecialTokens",
    "available_mixtures",
    "generate_with_super_resolution",
    "get_family",
    "get_modality",
    "layer_decay_param_groups",
    "load_mixture",
    "load_tokenizer",
    "load_vq_model",
    "modality_id",
    "plot_modalities",
    "register_family",
    "register_modality",
]
