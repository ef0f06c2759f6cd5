"""ember.rl PPO vs RLlib 2.60 PPO vs Stable-Baselines3 PPO on CartPole-v1, as one table.

    python benchmarks/rl.py                      # 3 seeds each, Ray/SB3 from .ray-venv
    python benchmarks/rl.py --seeds 0 --no-ray   # ember and SB3 only, one seed
    python benchmarks/rl.py --json out.json --txt out.txt

Every run is a fresh interpreter (ember with this one, RLlib and SB3 with .ray-venv's:
ember never imports Ray), started in its own session so that whatever a run leaves
behind is killed with it. Runs alternate runtime order per seed. Ray is a single local
instance on loopback with 2 CPUs, usage stats off and a private HOME, as in
benchmarks/core.py.

Same hyperparameters everywhere (``HYPERPARAMS``): 2 env runners x 4 envs (SB3: one
process, 8 envs), 1024 steps per iteration, minibatch 128, 10 epochs, lr 3e-3, GAE
lambda 0.95, clip 0.2, value coefficient 0.5, no entropy bonus, 64x64 tanh MLPs,
separate policy and value networks, seed per run, one torch thread per learner (on a
loaded 2-core machine more threads made updates many times slower in every library). RLlib and ember also use their KL
penalty (coefficient 0.2, target 0.01); SB3 has none (and its gradient clipping is
switched off, as in the other two).

Measured per run:
  time_to_450_s    wall seconds from building the algorithm (after the runtime is up)
                   until the reported mean episode return reaches 450 -- each library's
                   own figure, each set to smooth over 20 episodes: ember's
                   env_runners/episode_return_mean (the last 20 finished episodes),
                   RLlib's env_runners/episode_return_mean (metrics_num_episodes_for_smoothing
                   =20; in 2.60 it moves like a mean of fewer, recent episodes), SB3's
                   ep_info_buffer mean (stats_window_size=20)
  cpu_s_to_450     CPU seconds (user + system) the run's whole process tree used from
                   building the algorithm until the target -- the runtime's servers and
                   workers included; less sensitive than wall time to other load
  env_steps_to_450 env steps sampled by then
  sample_steps_per_s  env steps per second of sampling alone: ember and RLlib time 10
                   rounds of weight sync + one parallel sample of 1024 steps on the two
                   runners after training; SB3 sums its collect_rollouts time in training
The ratio column is oriented so that above 1 means ember is better.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _child import run_child
from _runner import environment_for_ray

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_RAY_PYTHON = REPO_ROOT / ".ray-venv" / "bin" / "python"
RESULT_PREFIX = "@@bench "

TARGET_RETURN = 450.0
MAX_ENV_STEPS = 300_000
RUN_TIMEOUT_S = 900
SAMPLE_ROUNDS = 10
HYPERPARAMS: dict[str, Any] = {
    "num_env_runners": 2, "num_envs_per_env_runner": 4, "train_batch_size": 1024,
    "minibatch_size": 128, "num_epochs": 10, "lr": 3e-3, "gamma": 0.99, "lambda": 0.95,
    "clip_param": 0.2, "vf_loss_coeff": 0.5, "entropy_coeff": 0.0, "kl_coeff": 0.2,
    "kl_target": 0.01, "hiddens": [64, 64], "activation": "tanh", "window": 20,
}
H = HYPERPARAMS


def _emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def tree_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process and every live descendant
    (the runtime's servers and workers included); exited children count once reaped."""
    import psutil
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def _loop(train_once: Any, returns_of: Any, steps_of: Any, cpu_start: float) -> dict[str, Any]:
    """Calls ``train_once`` until the return target or the step budget; times it."""
    start = time.perf_counter()
    curve: list[tuple[float, int, float]] = []
    while True:
        result = train_once()
        ret, steps = returns_of(result), steps_of(result)
        curve.append((round(time.perf_counter() - start, 3), int(steps), float(ret)))
        if ret >= TARGET_RETURN or steps >= MAX_ENV_STEPS:
            break
    elapsed = time.perf_counter() - start
    cpu_s = tree_cpu_s() - cpu_start
    reached = curve[-1][2] >= TARGET_RETURN
    return {"time_to_450_s": elapsed if reached else None, "cpu_s_to_450": cpu_s if reached else None,
            "env_steps_to_450": curve[-1][1] if reached else None,
            "final_return": curve[-1][2], "iterations": len(curve), "curve": curve[-5:]}


# -- the three runtimes (each runs in its own interpreter) ---------------------------------

def run_ember(seed: int) -> dict[str, Any]:
    import ember  # its learner sets torch to 1 thread while it updates (num_cpus_per_learner=1)
    from ember.rl import PPOConfig
    ember.init(num_cpus=2)
    try:
        cpu_start = tree_cpu_s()
        build_start = time.perf_counter()
        algo = (PPOConfig().environment("CartPole-v1")
                .env_runners(num_env_runners=H["num_env_runners"], num_envs_per_env_runner=H["num_envs_per_env_runner"])
                .training(lr=H["lr"], gamma=H["gamma"], lambda_=H["lambda"], train_batch_size=H["train_batch_size"],
                          minibatch_size=H["minibatch_size"], num_epochs=H["num_epochs"], clip_param=H["clip_param"],
                          vf_loss_coeff=H["vf_loss_coeff"], entropy_coeff=H["entropy_coeff"], kl_coeff=H["kl_coeff"],
                          kl_target=H["kl_target"],
                          model={"fcnet_hiddens": H["hiddens"], "fcnet_activation": H["activation"]})
                .reporting(metrics_num_episodes_for_smoothing=H["window"])
                .debugging(seed=seed).build_algo())
        build_s = time.perf_counter() - build_start
        out = _loop(algo.train, lambda r: r["env_runners"]["episode_return_mean"],
                    lambda r: r["num_env_steps_sampled_lifetime"], cpu_start)
        fragment = algo.algo_config.get_rollout_fragment_length()
        sample_start = time.perf_counter()
        steps = 0
        for _ in range(SAMPLE_ROUNDS):
            weights = algo.learner_group.runner_weights()
            steps += sum(r["num_env_steps"] for r in algo.env_runner_group.sample(weights, fragment))
        out.update(build_s=build_s, sample_steps_per_s=steps / (time.perf_counter() - sample_start))
        algo.stop()
        return out
    finally:
        ember.shutdown()


def run_rllib(seed: int) -> dict[str, Any]:
    import ray
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
    torch.set_num_threads(1)  # the learner runs in this (driver) process, as ember's
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        cpu_start = tree_cpu_s()
        build_start = time.perf_counter()
        algo = (PPOConfig().environment("CartPole-v1")
                .env_runners(num_env_runners=H["num_env_runners"], num_envs_per_env_runner=H["num_envs_per_env_runner"])
                .training(lr=H["lr"], gamma=H["gamma"], lambda_=H["lambda"],
                          train_batch_size_per_learner=H["train_batch_size"], minibatch_size=H["minibatch_size"],
                          num_epochs=H["num_epochs"], clip_param=H["clip_param"], vf_loss_coeff=H["vf_loss_coeff"],
                          entropy_coeff=H["entropy_coeff"], kl_coeff=H["kl_coeff"], kl_target=H["kl_target"])
                .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=H["hiddens"],
                                                           fcnet_activation=H["activation"], vf_share_layers=False))
                .reporting(metrics_num_episodes_for_smoothing=H["window"])
                .debugging(seed=seed).build_algo())
        build_s = time.perf_counter() - build_start

        def lifetime_steps(r: dict[str, Any]) -> int:
            return r.get("num_env_steps_sampled_lifetime") or r["env_runners"]["num_env_steps_sampled_lifetime"]

        out = _loop(algo.train, lambda r: r["env_runners"].get("episode_return_mean", float("nan")),
                    lifetime_steps, cpu_start)
        sample_start = time.perf_counter()
        steps = 0
        for _ in range(SAMPLE_ROUNDS):
            algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group,
                                               inference_only=True)
            episodes, _ = synchronous_parallel_sample(
                worker_set=algo.env_runner_group, max_env_steps=H["train_batch_size"],
                sample_timeout_s=60.0, _uses_new_env_runners=True, _return_metrics=True)
            steps += sum(_flat_env_steps(e) for e in episodes)
        out.update(build_s=build_s, sample_steps_per_s=steps / (time.perf_counter() - sample_start))
        algo.stop()
        return out
    finally:
        ray.shutdown()


def _flat_env_steps(item: Any) -> int:
    """Env steps in an RLlib episode or (nested) list of them."""
    if isinstance(item, (list, tuple)):
        return sum(_flat_env_steps(x) for x in item)
    return int(item.env_steps())


def run_sb3(seed: int) -> dict[str, Any]:
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Stop(BaseCallback):
        """Stops at the return target; sums rollout (sampling) time."""

        def __init__(self) -> None:
            super().__init__()
            self.start = time.perf_counter()
            self.rollout_s = 0.0
            self.rollout_start = 0.0
            self.curve: list[tuple[float, int, float]] = []
            self.reached = False

        def _on_rollout_start(self) -> None:
            self.rollout_start = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.rollout_s += time.perf_counter() - self.rollout_start
            buffer = self.model.ep_info_buffer
            mean = float(np.mean([e["r"] for e in buffer])) if buffer else float("nan")
            self.curve.append((round(time.perf_counter() - self.start, 3), self.num_timesteps, mean))
            self.reached = len(buffer) > 0 and mean >= TARGET_RETURN

        def _on_step(self) -> bool:
            return True

    torch.set_num_threads(1)  # as ember's and RLlib's learners
    envs = H["num_env_runners"] * H["num_envs_per_env_runner"]
    cpu_start = tree_cpu_s()
    build_start = time.perf_counter()
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=envs, seed=seed),
                n_steps=H["train_batch_size"] // envs, batch_size=H["minibatch_size"], n_epochs=H["num_epochs"],
                learning_rate=H["lr"], gamma=H["gamma"], gae_lambda=H["lambda"], clip_range=H["clip_param"],
                vf_coef=H["vf_loss_coeff"], ent_coef=H["entropy_coeff"], max_grad_norm=1e10,
                policy_kwargs={"net_arch": {"pi": H["hiddens"], "vf": H["hiddens"]},
                               "activation_fn": torch.nn.Tanh},
                stats_window_size=H["window"], seed=seed, device="cpu")
    build_s = time.perf_counter() - build_start
    callback = Stop()

    start = time.perf_counter()
    callback.start = start
    # learn() in chunks of one iteration so the target check ends training promptly.
    while not callback.reached and model.num_timesteps < MAX_ENV_STEPS:
        model.learn(total_timesteps=H["train_batch_size"], callback=callback, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    cpu_s = tree_cpu_s() - cpu_start
    last = callback.curve[-1]
    return {"time_to_450_s": elapsed if callback.reached else None,
            "cpu_s_to_450": cpu_s if callback.reached else None,
            "env_steps_to_450": last[1] if callback.reached else None, "final_return": last[2],
            "iterations": len(callback.curve), "curve": callback.curve[-5:], "build_s": build_s,
            "sample_steps_per_s": model.num_timesteps / callback.rollout_s}


RUNNERS = {"ember": run_ember, "rllib": run_rllib, "sb3": run_sb3}


# -- the parent: runs every (runtime, seed) in a fresh interpreter ---------------------------

def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "not reached" if value is None else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--ray-python", default=str(DEFAULT_RAY_PYTHON))
    parser.add_argument("--no-ray", action="store_true", help="skip RLlib and SB3 (they live in .ray-venv)")
    parser.add_argument("--json", help="write every run's result here")
    parser.add_argument("--txt", help="write the table here")
    parser.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _emit(RUNNERS[args.child](args.seed))
        return 0

    runtimes = ["ember"] + ([] if args.no_ray or not Path(args.ray_python).exists() else ["rllib", "sb3"])
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in runtimes}
    with tempfile.TemporaryDirectory(prefix="ember-rl-bench-") as tmp:
        home = Path(tmp) / "ray-home"
        home.mkdir()
        (home / "ray_bootstrap_config.yaml").write_text("{}\n")
        for i, seed in enumerate(args.seeds):
            for runtime in (runtimes if i % 2 == 0 else runtimes[::-1]):
                python = sys.executable if runtime == "ember" else args.ray_python
                env = dict(os.environ) if runtime == "ember" else environment_for_ray(str(home))
                print(f"seed {seed}: {runtime} (load average {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
                result = run_child([python, str(Path(__file__).resolve()), "--child", runtime,
                                    "--seed", str(seed)], env, Path(tmp) / f"{runtime}.log",
                                   RUN_TIMEOUT_S, RESULT_PREFIX, REPO_ROOT, runtime)
                result["seed"] = seed
                runs[runtime].append(result)
                print(f"    {json.dumps({k: v for k, v in result.items() if k != 'curve'})}", file=sys.stderr,
                      flush=True)
        failed = {r: (Path(tmp) / f"{r}.log").read_text(errors="replace")[-3000:]
                  for r in runtimes if any("error" in x for x in runs[r]) and (Path(tmp) / f"{r}.log").exists()}
    for runtime, log in failed.items():
        print(f"--- {runtime} log tail ---\n{log}", file=sys.stderr)

    med = {r: {key: _median([x.get(key) for x in runs[r]])
               for key in ("time_to_450_s", "cpu_s_to_450", "env_steps_to_450", "sample_steps_per_s", "build_s")}
           for r in runtimes}
    lines = [f"PPO on CartPole-v1 to mean return {TARGET_RETURN:g}, medians over seeds {args.seeds} "
             f"({platform.node() and os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f})",
             f"{'metric':<28}" + "".join(f"{r:>14}" for r in runtimes)
             + "".join(f"{'ember vs ' + r:>18}" for r in runtimes[1:])]
    for key, better in (("time_to_450_s", "lower"), ("cpu_s_to_450", "lower"), ("env_steps_to_450", "lower"),
                        ("sample_steps_per_s", "higher"), ("build_s", "lower")):
        digits = 1 if key in ("time_to_450_s", "cpu_s_to_450", "build_s") else 0
        row = f"{key:<28}" + "".join(f"{_fmt(med[r][key], digits):>14}" for r in runtimes)
        for other in runtimes[1:]:
            mine, theirs = med["ember"][key], med[other][key]
            ratio = None
            if mine and theirs:
                ratio = theirs / mine if better == "lower" else mine / theirs
            row += f"{('%.2fx' % ratio) if ratio else 'n/a':>18}"
        lines.append(row)
    table = "\n".join(lines)
    print(table)
    if args.txt:
        Path(args.txt).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"hyperparams": HYPERPARAMS, "runs": runs, "medians": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
