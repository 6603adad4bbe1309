from .configuration_contrec_tokenizer import ContRecTokenizerConfig
from .modeling_contrec_tokenizer import ContRecTokenizer, ContRecTokenizerOutput, collapse_diagnostics, effective_rank

__all__ = [
    "ContRecTokenizer",
    "ContRecTokenizerConfig",
    "ContRecTokenizerOutput",
    "collapse_diagnostics",
    "effective_rank",
]
