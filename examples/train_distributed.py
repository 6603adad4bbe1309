"""Stage-2 training in several processes with accelerate (gloo on CPU machines, NCCL on GPUs).

Run either of:
    torchrun --nproc_per_node 2 examples/train_distributed.py --tokenizer runs/demo/tokenizer --output runs/ddp
    accelerate launch --multi_gpu --num_processes 2 examples/train_distributed.py --tokenizer runs/demo/tokenizer \
        --output runs/ddp
(`accelerate launch --cpu --num_processes 2` silently starts ONE process: use --multi_gpu or torchrun.)

Every process builds the same model from the same seed and takes its share of each global batch; gradients are
averaged, so the run walks the same data as a single process.
"""

import argparse

from accelerate import PartialState

from contrec_hf.data import load_sequential_dataset
from contrec_hf.training import RecommenderTrainingArguments, end_processes, run_recommender_stage

parser = argparse.ArgumentParser()
parser.add_argument("--dataset", default="ml-100k")
parser.add_argument("--data-path")
parser.add_argument("--items-path")
parser.add_argument("--tokenizer", required=True, help="a stage-1 folder (e.g. runs/demo/tokenizer)")
parser.add_argument("--output", required=True)
parser.add_argument("--max-steps", type=int, default=200)
parser.add_argument("--batch-size", type=int, default=16)
args = parser.parse_args()

kwargs = {"items_path": args.items_path} if args.items_path else {}
data = load_sequential_dataset(args.dataset, args.data_path, **kwargs)
training = RecommenderTrainingArguments(
    output_dir=args.output,
    batch_size=args.batch_size,
    max_steps=args.max_steps,
    eval_steps=max(1, args.max_steps // 2),
    save_steps=max(1, args.max_steps // 2),
    eval_users=200,
)
trainer = run_recommender_stage(data, args.tokenizer, training, progress=False)
state = PartialState()
if state.is_main_process:
    print(f"{state.num_processes} process(es): best validation NDCG@10 {trainer.state['best_ndcg']:.4f}")
end_processes()  # leave the process group before Python exits: an open gloo group can abort the process
