"""Pipelines: ContRecDiffusionPipeline and its item catalog."""

from .catalog import ContRecCatalog
from .pipeline_contrec import READOUTS, ContRecDiffusionPipeline, ContRecPipelineOutput, build_pipeline
from .tuning import tune_text_weight

__all__ = [
    "READOUTS",
    "ContRecCatalog",
    "ContRecDiffusionPipeline",
    "ContRecPipelineOutput",
    "build_pipeline",
    "tune_text_weight",
]
