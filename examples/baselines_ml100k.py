"""Train and evaluate the Popularity and SASRec baselines on MovieLens-100K.

Run: .venv/bin/python examples/baselines_ml100k.py  (about 2 minutes on 2 CPU cores)
"""

from contrec_hf.baselines import run_baseline
from contrec_hf.data import load_sequential_dataset
from contrec_hf.evaluation import format_metrics_table

data = load_sequential_dataset("ml-100k")
print(data.stats())
results = {name: run_baseline(name, data, seed=0)["test"] for name in ("pop", "sasrec")}
print(format_metrics_table(results))
