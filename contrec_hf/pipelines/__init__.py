"""Pipelines: ContRecDiffusionPipeline and its item catalog."""

from .catalog import ContRecCatalog
from .pipeline_contrec import READOUTS, ContRecDiffusionPipeline, ContRecPipelineOutput, build_pipeline

__all__ = ["READOUTS", "ContRecCatalog", "ContRecDiffusionPipeline", "ContRecPipelineOutput", "build_pipeline"]
