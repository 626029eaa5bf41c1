"""Ray Tune's side of the sweep benchmark (issue 30; run it through scripts/bench-sweep-ray).

The search is trainyard's: an MLP on friedman1 (20,000 rows, 8 features: 5 informative and 3
noise, unit normal noise), 20% of the rows held out for the test metrics, and 20% of the
training rows held out for validation (early stopping looks at them, never at the test rows).
Inputs and target are standardised with the statistics of the rows the model trains on. The
model is scikit-learn's MLPRegressor: ReLU, Adam, squared error, no weight decay; one epoch is
one `partial_fit` over the training rows, shuffled into mini-batches of `batch_size`.

Space: learning_rate loguniform [1e-4, 1e-1]; hidden_sizes choice [[16], [32], [64], [32, 16],
[64, 32]]; batch_size choice [16, 32, 64, 128]; up to 100 epochs. The configurations are drawn
once from a seeded NumPy generator and given to Ray as a grid of fixed points, so both runs
train exactly the same configurations:
  asha:   ASHAScheduler(time_attr="training_iteration", metric="val_loss", mode="min",
          max_t=max_epochs, grace_period=5, reduction_factor=3)
  random: no scheduler (FIFO): every trial trains all its epochs.
Each trial holds 1 CPU; at most `parallel` run at once; Ray starts locally with
num_cpus=parallel and no dashboard.

Each trial reports after every epoch `val_loss` (MSE on the validation rows, standardised
target) and `test_r2` (R2 on the test rows, original units), so a trial that ASHA stops still
has the test R2 of the model it ended with. The best trial is the one with the lowest
`val_loss` at its end (Ray's `get_best_result(scope="last")`). Printed per run: the search's
wall time (tuner.fit(), Ray's start is given apart), the wall time until the best trial's
last result was known, the best configuration and its test R2, the epochs trained, the trials
stopped early, and the versions; the last lines of stdout are one JSON object per run (also
written to --json PATH, one per line).
"""

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

HIDDEN_SIZES = [[16], [32], [64], [32, 16], [64, 32]]
BATCH_SIZES = [16, 32, 64, 128]
LEARNING_RATE = (1e-4, 1e-1)
ROWS = 20_000
FEATURES = 8
TEST_FRACTION = 0.2
VAL_FRACTION = 0.2


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--parallel", type=int, default=2, help="trials at once, and Ray's num_cpus")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--grace-period", type=int, default=5)
    p.add_argument("--reduction-factor", type=int, default=3)
    p.add_argument("--runs", default="asha,random", help="comma-separated: asha, random")
    p.add_argument("--json", metavar="PATH", help="also write the JSON lines here")
    p.add_argument("--configs", metavar="PATH",
                   help="train these configurations (a JSON list of objects with learning_rate, "
                        "hidden_sizes, batch_size, as scripts/bench-sweep writes trainyard's) "
                        "instead of drawing --trials of them")
    args = p.parse_args()
    args.runs = [r for r in args.runs.split(",") if r]
    for r in args.runs:
        if r not in ("asha", "random"):
            p.error(f"unknown run {r!r}: asha or random")
    if args.trials < 1 or args.max_epochs < 1 or args.parallel < 1:
        p.error("--trials, --max-epochs and --parallel must be at least 1")
    return args


def sample_configs(trials, seed):
    """The search's configurations, drawn once so that every run trains the same ones."""
    rng = np.random.default_rng(seed)
    lo, hi = (math.log(v) for v in LEARNING_RATE)
    return [
        {
            "trial": i,
            "learning_rate": float(math.exp(rng.uniform(lo, hi))),
            "hidden_sizes": list(HIDDEN_SIZES[rng.integers(len(HIDDEN_SIZES))]),
            "batch_size": int(BATCH_SIZES[rng.integers(len(BATCH_SIZES))]),
        }
        for i in range(trials)
    ]


def make_data(seed):
    """friedman1 split into training, validation and test rows, standardised."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=ROWS, n_features=FEATURES, noise=1.0, random_state=seed)
    order = np.random.default_rng(seed).permutation(ROWS)
    n_test = max(1, round(ROWS * TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    n_val = max(1, round(len(train) * VAL_FRACTION))
    val, fit = train[:n_val], train[n_val:]
    x_mean, x_std = x[fit].mean(axis=0), x[fit].std(axis=0)
    y_mean, y_std = y[fit].mean(), y[fit].std()

    def sx(rows):
        return ((x[rows] - x_mean) / x_std).astype(np.float32)

    def sy(rows):
        return ((y[rows] - y_mean) / y_std).astype(np.float32)

    return {
        "x_fit": sx(fit), "y_fit": sy(fit),
        "x_val": sx(val), "y_val": sy(val),
        "x_test": sx(test), "y_test": y[test].astype(np.float32),
        "y_mean": float(y_mean), "y_std": float(y_std),
    }


def train_trial(config, data, seed, max_epochs):
    """One trial: reports after each epoch; Ray ends it when ASHA stops it."""
    from ray import tune
    from sklearn.neural_network import MLPRegressor

    c = config["cfg"]
    model = MLPRegressor(
        hidden_layer_sizes=tuple(c["hidden_sizes"]),
        activation="relu",
        solver="adam",
        alpha=0.0,
        batch_size=c["batch_size"],
        learning_rate_init=c["learning_rate"],
        shuffle=True,
        # A generator, not the bare seed: partial_fit makes a fresh RandomState from an int on
        # every call, which would give every epoch the same batch order.
        random_state=np.random.RandomState(seed),
    )
    y_test = data["y_test"].astype(np.float64)
    test_ss = float(((y_test - y_test.mean()) ** 2).sum())
    for epoch in range(1, max_epochs + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_fit(data["x_fit"], data["y_fit"])
        val_pred = model.predict(data["x_val"]).astype(np.float64)
        val_loss = float(((val_pred - data["y_val"]) ** 2).mean())
        test_pred = model.predict(data["x_test"]).astype(np.float64) * data["y_std"] + data["y_mean"]
        test_r2 = 1.0 - float(((test_pred - y_test) ** 2).sum()) / test_ss
        if not math.isfinite(val_loss):
            val_loss = float("inf")
        tune.report({"val_loss": val_loss, "test_r2": test_r2, "epoch": epoch, "wall": time.time()})


def run_search(name, configs, data, args, storage):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    scheduler = None
    if name == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            metric="val_loss",
            mode="min",
            max_t=args.max_epochs,
            grace_period=min(args.grace_period, args.max_epochs),
            reduction_factor=args.reduction_factor,
        )
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=data, seed=args.seed, max_epochs=args.max_epochs),
        {"cpu": 1},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"cfg": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            scheduler=scheduler,
            num_samples=1,
            max_concurrent_trials=args.parallel,
        ),
        run_config=tune.RunConfig(name=f"sweep-{name}", storage_path=storage, verbose=0),
    )
    start = time.time()
    grid = tuner.fit()
    wall = time.time() - start
    if grid.errors:
        raise SystemExit(f"{name}: {len(grid.errors)} trials failed: {grid.errors[0]}")
    best = grid.get_best_result(metric="val_loss", mode="min", scope="last")
    epochs = [r.metrics["training_iteration"] for r in grid]
    cfg = best.config["cfg"]
    return {
        "run": name,
        "wall_s": round(wall, 2),
        "wall_to_best_s": round(best.metrics["wall"] - start, 2),
        "best": {
            "trial": cfg["trial"],
            "learning_rate": cfg["learning_rate"],
            "hidden_sizes": cfg["hidden_sizes"],
            "batch_size": cfg["batch_size"],
            "epochs": best.metrics["training_iteration"],
            "val_loss": round(best.metrics["val_loss"], 5),
            "test_r2": round(best.metrics["test_r2"], 5),
        },
        "max_test_r2": round(max(r.metrics["test_r2"] for r in grid), 5),
        "epochs_total": int(sum(epochs)),
        # The trials' own time (Ray's time_total_s), summed: the rest of wall_s x parallel is
        # Ray's scheduling and start-up of trial processes, or idle slots.
        "trial_time_sum_s": round(sum(r.metrics["time_total_s"] for r in grid), 2),
        "epochs_max_total": len(configs) * args.max_epochs,
        "stopped_early": sum(1 for e in epochs if e < args.max_epochs),
        "trials": len(epochs),
    }


def main():
    args = parse_args()
    import ray
    import sklearn

    versions = {
        "python": platform.python_version(),
        "ray": ray.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
    }
    if args.configs:
        with open(args.configs) as f:
            configs = [
                {"trial": i, "learning_rate": float(c["learning_rate"]),
                 "hidden_sizes": list(c["hidden_sizes"]), "batch_size": int(c["batch_size"])}
                for i, c in enumerate(json.load(f))
            ]
        args.trials = len(configs)
    else:
        configs = sample_configs(args.trials, args.seed)
    data = make_data(args.seed)
    storage = tempfile.mkdtemp(prefix="trainyard-ray-")
    try:
        t = time.time()
        ray.init(num_cpus=args.parallel, include_dashboard=False, logging_level="WARNING")
        ray_init_s = round(time.time() - t, 2)
        results = []
        for name in args.runs:
            r = run_search(name, configs, data, args, storage)
            r.update({
                "system": "ray-tune",
                "trials_asked": args.trials,
                "max_epochs": args.max_epochs,
                "parallel": args.parallel,
                "seed": args.seed,
                "ray_init_s": ray_init_s,
                "cpus": os.cpu_count(),
                "versions": versions,
            })
            if name == "asha":
                r["asha"] = {"grace_period": min(args.grace_period, args.max_epochs),
                             "reduction_factor": args.reduction_factor, "max_t": args.max_epochs}
            results.append(r)
            b = r["best"]
            print(f"{name}: {r['trials']} trials, {r['wall_s']:.1f} s wall "
                  f"(Ray's start {ray_init_s:.1f} s apart), best known after "
                  f"{r['wall_to_best_s']:.1f} s: trial {b['trial']} lr {b['learning_rate']:.2e} "
                  f"hidden {b['hidden_sizes']} batch {b['batch_size']}, {b['epochs']} epochs, "
                  f"val_loss {b['val_loss']:.4f}, test R2 {b['test_r2']:.4f} "
                  f"(best test R2 of any trial {r['max_test_r2']:.4f}); "
                  f"{r['epochs_total']} of {r['epochs_max_total']} epochs, "
                  f"{r['stopped_early']} stopped early", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines = [json.dumps(r, sort_keys=True) for r in results]
    if args.json:
        with open(args.json, "w") as f:
            f.write("\n".join(lines) + "\n")
    for line in lines:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
