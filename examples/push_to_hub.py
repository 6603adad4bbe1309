"""Push a finished run (`contrec-hf run`) to the Hub as three repositories with model cards, then load the
pipeline back from the Hub and recommend.

Run (with a Hub token, `huggingface-cli login` or HF_TOKEN):
    .venv/bin/python examples/push_to_hub.py --run runs/demo --repo-prefix USER/ml100k-contrec --history 1,50,181
"""

import argparse

from contrec_hf import ContRecDiffusionPipeline
from contrec_hf.hub import push_run

parser = argparse.ArgumentParser()
parser.add_argument("--run", default="runs/demo")
parser.add_argument("--repo-prefix", required=True, help="USER/NAME")
parser.add_argument("--history", default="1,50,181")
parser.add_argument("--private", action="store_true")
args = parser.parse_args()

pushed = push_run(args.run, args.repo_prefix, private=args.private)
for component, repo in pushed.items():
    print(f"pushed {component:<12} → {repo}")

pipe = ContRecDiffusionPipeline.from_pretrained(pushed["pipeline"])  # through the Hub: download, then load
out = pipe([args.history.split(",")], top_k=5)
titles = dict(zip(pipe.catalog.config.item_ids, pipe.catalog.config.titles))
print("recommended from the Hub copy:", "; ".join(titles[i] for i in out.item_ids[0]))
