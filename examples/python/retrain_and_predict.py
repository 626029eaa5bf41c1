#!/usr/bin/env python3
"""Upload a CSV, train every model type on it (`all`), follow progress, and predict with the
best model.

    pip install ./clients/python
    trainyard up &                                   # a node on http://127.0.0.1:5000
    python3 examples/python/retrain_and_predict.py data.csv --target price

Without a CSV it makes one (price = 2a + b, with noise).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from trainyard import Client, TrainyardError


def sample_csv() -> Path:
    path = Path(tempfile.mkdtemp()) / "prices.csv"
    rng = random.Random(7)
    rows = ["a,b,price"]
    for _ in range(500):
        a, b = rng.random(), rng.randrange(5)
        rows.append(f"{a:.4f},{b},{2 * a + b + rng.gauss(0, 0.05):.4f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path)
    parser.add_argument("--target", default="price")
    parser.add_argument("--server", default="http://127.0.0.1:5000")
    parser.add_argument("--token")
    args = parser.parse_args()

    with Client(args.server, token=args.token) as client:
        try:
            dataset = client.upload_csv(args.csv or sample_csv(), target=args.target)
            print(f"data set {dataset['id']}: {dataset['rows']} rows, features {dataset['features']}")
            task = client.submit("all", dataset=dataset["id"], epochs=100)
            print(f"task {task.id} submitted")
            for progress in task.progress():
                print(f"  {progress['percent']:5.1f}%  {progress.get('message', '')}", end="\r")
            result = task.wait(timeout=600)
            print()
            print(f"best model: {result['best_model']}")
            for model, metrics in result["metrics"].items():
                if isinstance(metrics, dict):  # one entry per model trained
                    print(f"  {model}: test_r2 {metrics['test_r2']:.4f}, test_rmse {metrics['test_rmse']:.4f}")
            row = [0.5] * len(dataset["features"])
            print(f"prediction for {row}: {client.predict(task.id, [row])[0]:.4f}")
        except TrainyardError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
