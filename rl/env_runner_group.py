"""EnvRunnerGroup: the env runner actors of one algorithm, their weights and their failures.

Per sampling round the weights go out once (``ember.put``) and every runner gets the
same ref, so the object store holds one copy however many runners read it. Results are
gathered with ``ember.wait``: a runner whose actor died (SIGKILL, OOM, a crash in the
env) is replaced by a fresh actor and the round goes on with the batches of the others.
With ``num_env_runners=0`` one runner lives in the driver process instead.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ember
from ember import exceptions as ex

from .env import EnvCreator
from .env_runner import EnvRunner, Postprocess
from .errors import RLConfigError

logger = logging.getLogger(__name__)

#: What a runner's death looks like to the caller of one of its methods.
RUNNER_FAILURES = (ex.ActorDiedError, ex.ActorUnavailableError, ex.WorkerCrashedError,
                   ex.OwnerDiedError)


class EnvRunnerGroup:
    """``num_env_runners`` EnvRunner actors (or one local runner when 0).

    Args:
        env_creator: makes one env.
        num_env_runners: remote runners; 0 samples in the driver.
        num_envs: envs per runner.
        num_cpus: CPUs each runner actor holds.
        seed: base seed (runner i uses seed + 1000 * i).
        postprocess, gamma, lambda_: see EnvRunner.
        restart_failed: replace runners that die instead of failing the round.
        max_restarts: how many replacements in total before giving up.
        sample_timeout_s: a runner that has not answered after this long is replaced.
    """

    def __init__(self, env_creator: EnvCreator, num_env_runners: int, num_envs: int, num_cpus: float,
                 seed: int | None, postprocess: Postprocess, gamma: float, lambda_: float,
                 restart_failed: bool = True, max_restarts: int = 1000,
                 sample_timeout_s: float = 60.0) -> None:
        self._args = (env_creator, num_envs)
        self._kwargs = {"postprocess": postprocess, "gamma": gamma, "lambda_": lambda_}
        self._seed = seed
        self._num_cpus = num_cpus
        self.restart_failed = restart_failed
        self.max_restarts = max_restarts
        self.sample_timeout_s = sample_timeout_s
        #: Replacements made so far (RLlib's ``num_remote_worker_restarts``).
        self.num_restarts = 0
        self.local: EnvRunner | None = None
        self.runners: list[Any] = []
        if num_env_runners == 0:
            self.local = EnvRunner(env_creator, num_envs, seed, 0, **self._kwargs)
        else:
            self._actor_cls = ember.remote(EnvRunner)
            self.runners = [self._start(i + 1) for i in range(num_env_runners)]
            self._wait_started(2 * sample_timeout_s)

    def _wait_started(self, timeout_s: float) -> None:
        """Blocks until every runner made its envs; a runner that cannot even be placed is
        an error naming the CPUs it asks for, not a silent wait (e.g. inside a Tune trial
        whose actor holds the last CPU). An env that fails to build raises its own error."""
        try:
            ember.get([r.ping.remote() for r in self.runners], timeout=timeout_s)
        except ex.GetTimeoutError:
            free = ember.available_resources().get("CPU", 0.0)
            count = len(self.runners)
            self.stop()
            raise RLConfigError(
                "num_cpus_per_env_runner",
                f"{count} env runners asking for {self._num_cpus} CPU each did not "
                f"start within {timeout_s:g} s ({free:g} CPUs are free now)",
                "Lower .env_runners(num_env_runners=..., num_cpus_per_env_runner=...) (0 CPUs is fine "
                "for cheap envs, and needed inside a Tune trial on a small cluster), or add CPUs.") from None

    @property
    def num_healthy(self) -> int:
        """Runner actors in the group: a failed one is replaced at once, so between rounds
        this is all of them (1 for the local runner)."""
        return len(self.runners) if self.runners else 1

    def _start(self, index: int) -> Any:
        seed = None if self._seed is None else self._seed + 7919 * self.num_restarts
        return self._actor_cls.options(num_cpus=self._num_cpus, name=None).remote(
            *self._args, seed, index, **self._kwargs)

    def _replace(self, i: int, why: BaseException | str) -> None:
        if not self.restart_failed or self.num_restarts >= self.max_restarts:
            raise RLConfigError(
                "restart_failed_env_runners",
                f"env runner {i + 1} failed ({why}) and may not be replaced "
                f"({self.num_restarts} of max {self.max_restarts} restarts used)",
                "Fix the env, or allow .fault_tolerance(restart_failed_env_runners=True, "
                "max_num_env_runner_restarts=N).") from (why if isinstance(why, BaseException) else None)
        logger.warning("env runner %d failed (%s); starting a replacement", i + 1, why)
        try:
            ember.kill(self.runners[i], no_restart=True)
        except Exception:  # noqa: BLE001 - it is dead already, which is the point
            pass
        self.num_restarts += 1
        self.runners[i] = self._start(i + 1)

    def sample(self, weights: dict[str, Any], num_steps: int, **kwargs: Any) -> list[dict[str, Any]]:
        """One round: every healthy runner samples ``num_steps`` per env; results in runner order.

        Runners that fail are replaced and left out of this round; if all fail, the round
        is run again on the replacements.
        """
        if self.local is not None:
            return [self.local.sample(weights, num_steps, **kwargs)]
        return self._call_all("sample", weights, num_steps, **kwargs)

    def evaluate(self, weights: dict[str, Any], num_episodes: int, explore: bool = False) -> list[dict[str, Any]]:
        """Splits ``num_episodes`` over the runners; each result has episode returns and lengths."""
        if self.local is not None:
            return [self.local.evaluate(weights, num_episodes, explore)]
        share = -(-num_episodes // len(self.runners))
        return self._call_all("evaluate", weights, share, explore)

    def _call_all(self, method: str, weights: dict[str, Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        for _attempt in range(3):
            weights_ref = ember.put(weights)
            pending = {getattr(r, method).remote(weights_ref, *args, **kwargs): i
                       for i, r in enumerate(self.runners)}
            results: dict[int, dict[str, Any]] = {}
            deadline = time.monotonic() + self.sample_timeout_s
            while pending:
                ready, _ = ember.wait(list(pending), num_returns=1,
                                      timeout=max(0.0, deadline - time.monotonic()))
                if not ready:
                    for ref, i in pending.items():
                        self._replace(i, f"no answer within sample_timeout_s={self.sample_timeout_s}")
                    break
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        results[i] = ember.get(ref)
                    except RUNNER_FAILURES as err:
                        self._replace(i, err)
            if results:
                return [results[i] for i in sorted(results)]
        raise RLConfigError("env_runners", "every env runner failed three rounds in a row",
                            "Check that the env can be made and stepped in a worker process.")

    def pids(self) -> list[int]:
        """Process ids of the runner actors (empty for a local runner)."""
        return ember.get([r.pid.remote() for r in self.runners])

    def stop(self) -> None:
        """Ends every runner actor; safe to call twice."""
        if self.local is not None:
            self.local.stop()
            self.local = None
        for r in self.runners:
            try:
                ember.kill(r, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.runners = []
