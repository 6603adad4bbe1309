"""The ``contrec-hf`` command line.

```
contrec-hf data stats --dataset ml-100k [--json]
contrec-hf baseline --model pop sasrec --dataset ml-100k --output runs/baselines [--seed 0]
contrec-hf tokenizer train --dataset ml-100k --features {collaborative,text,hybrid} --output runs/tokenizer
contrec-hf train --tokenizer runs/tokenizer --output runs/recommender --ranking-loss-weight 2
contrec-hf run --dataset ml-100k --output runs/demo --device cuda --mixed-precision bf16
```
`contrec-hf COMMAND --help` lists every option; those of a stage are generated from the fields of the config and
training-arguments classes it takes (`parser.py`), with their docstrings as help. `baseline`, `tokenizer train`,
`train` and `run` take ``--device {auto,cpu,cuda}`` and ``--mixed-precision {no,bf16,fp16}``.
Errors on bad input are printed as one line, without a traceback, and the exit status is 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import ContRecError
from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``contrec-hf`` command.

    Returns:
        `int`: the exit status: 0, 2 for a `ContRecError` (printed as one line), 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ContRecError as err:  # the library's own errors name the problem: one line, exit 2
        # Anything else (a plain ValueError, RuntimeError, OSError) is a bug or unforeseen: it keeps its traceback.
        message = " ".join(str(err).split())  # one line, whatever the exception's own layout
        print(f"contrec-hf: error: {type(err).__name__}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("contrec-hf: interrupted", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # a command that never imported torch joined no process group
            from ..training.devices import end_processes

            end_processes()  # under torchrun, an open gloo group can abort the process at exit
