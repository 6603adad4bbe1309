from .configuration_contrec import PREDICTION_TYPES, ContRecConfig
from .modeling_contrec import ContRecForRecommendation, ContRecOutput, ContRecPreTrainedModel, exp_noise_betas

__all__ = [
    "PREDICTION_TYPES",
    "ContRecConfig",
    "ContRecForRecommendation",
    "ContRecOutput",
    "ContRecPreTrainedModel",
    "exp_noise_betas",
]
