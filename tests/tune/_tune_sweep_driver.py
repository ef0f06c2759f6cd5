"""A sweep run as its own driver process, for the SIGKILL-and-restore test.

    python _tune_sweep_driver.py STORAGE_PATH LOG_PATH
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ember  # noqa: E402
from ember import tune  # noqa: E402
from _tune_trainables import logged_counter  # noqa: E402


def main() -> None:
    storage_path, log_path = sys.argv[1], sys.argv[2]
    ember.init(num_cpus=2)
    tune.Tuner(logged_counter,
               param_space={"i": tune.grid_search(list(range(8))), "log": log_path,
                            "steps": 4, "sleep_s": 0.15},
               tune_config=tune.TuneConfig(metric="step", mode="max"),
               run_config=tune.RunConfig(name="killed", storage_path=storage_path,
                                         verbose=0)).fit()


if __name__ == "__main__":
    main()
