from ..diffusion_head import exp_noise_betas
from .configuration_contrec import PREDICTION_TYPES, ContRecConfig
from .modeling_contrec import ContRecForRecommendation, ContRecOutput, ContRecPreTrainedModel

__all__ = [
    "PREDICTION_TYPES",
    "ContRecConfig",
    "ContRecForRecommendation",
    "ContRecOutput",
    "ContRecPreTrainedModel",
    "exp_noise_betas",
]
