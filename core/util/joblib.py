"""A joblib parallel backend named "ember", so ``n_jobs`` code runs on the cluster.

::

    from ember.util.joblib import register_ember
    register_ember()
    with joblib.parallel_backend("ember"):
        GridSearchCV(model, grid, n_jobs=-1).fit(X, y)   # or Parallel(n_jobs=4)(...)

The backend implements joblib's public custom-backend API (``ParallelBackendBase`` plus
joblib's ``AutoBatchingMixin``, which groups tiny calls into batches) over
:class:`ember.util.multiprocessing.Pool`. Each ``Parallel`` call gets a pool of actors
for its duration: joblib configures the backend at the start of a call and terminates
it at the end.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import ember
from ember.util.multiprocessing import Pool, _workers_that_fit

try:
    import joblib
    from joblib.parallel import (AutoBatchingMixin, FallbackToBackend, ParallelBackendBase,
                                 SequentialBackend)
except ImportError as _import_error:  # joblib is an optional dependency
    raise ImportError(
        "ember.util.joblib needs joblib: pip install joblib") from _import_error

__all__ = ["register_ember", "EmberBackend"]


class _Outcome:
    """What a finished batch produced: a value, or the exception it raised.

    Wrapping both in one type lets a batch that legitimately *returns* an exception
    object be told apart from one that raised.
    """

    __slots__ = ("value", "error")

    def __init__(self, value: Any = None, error: Optional[BaseException] = None) -> None:
        self.value = value
        self.error = error


class EmberBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib backend running batches on ember actors (see :func:`register_ember`).

    Args:
        ember_remote_args: Actor options for the workers, e.g. ``{"num_cpus": 2}``.
            Pass it through joblib: ``parallel_backend("ember", ember_remote_args=...)``.
        **kwargs: joblib's own backend arguments (``nesting_level``, ...).

    Example:
        >>> with joblib.parallel_backend("ember"):
        ...     joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(3))
        [0, 1, 2]
    """

    #: -1 = one worker per cluster CPU when the caller leaves n_jobs unset.
    default_n_jobs = -1
    supports_retrieve_callback = True
    uses_threads = False
    supports_sharedmem = False

    def __init__(self, ember_remote_args: Optional[dict] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._remote_args = dict(ember_remote_args or {})
        self._pool: Optional[Pool] = None
        self._requested_n_jobs: Any = None

    def effective_n_jobs(self, n_jobs: Optional[int]) -> int:
        """The number of workers a Parallel call gets.

        Negative values count back from the cluster's CPUs as joblib does (-1 = all);
        values above the cluster's CPUs are capped there, since each worker holds a
        CPU.

        Args:
            n_jobs: What the caller asked for; None means ``default_n_jobs``.

        Returns:
            At least 1.

        Raises:
            ValueError: ``n_jobs`` is 0.

        Example:
            >>> EmberBackend().effective_n_jobs(-1)  # on a 2-CPU cluster
            2
        """
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            n_jobs = self.default_n_jobs
        # cluster_resources() starts ember if it is not running yet.
        capacity = _workers_that_fit(ember.cluster_resources().get("CPU", 0),
                                     float(self._remote_args.get("num_cpus", 1)))
        if n_jobs < 0:
            n_jobs = capacity + 1 + n_jobs
        return max(min(n_jobs, capacity), 1)

    def configure(self, n_jobs: int = 1, parallel: Any = None, prefer: Optional[str] = None,
                  require: Optional[str] = None, **backend_kwargs: Any) -> int:
        """Start the worker pool for one Parallel call; joblib calls this.

        Args:
            n_jobs: Workers requested.
            parallel: The joblib Parallel instance.
            prefer: joblib's soft hint; unused.
            require: joblib's hard constraint; unused (``"sharedmem"`` makes joblib
                pick a thread backend itself, as supports_sharedmem is False).
            **backend_kwargs: joblib's multiprocessing options (memmapping); unused.

        Returns:
            The number of workers started.

        Raises:
            FallbackToBackend: With one worker joblib runs the calls inline instead.

        Example:
            >>> EmberBackend().configure(n_jobs=2)
            2
        """
        n = self.effective_n_jobs(n_jobs)
        if n == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        self._requested_n_jobs = n_jobs
        self._pool = Pool(processes=n, ember_remote_args=self._remote_args or None)
        return n

    def submit(self, func: Callable[[], Any],
               callback: Optional[Callable[[Any], Any]] = None) -> Any:
        """Run one joblib batch in the pool; ``callback`` gets its outcome.

        Args:
            func: joblib's batch of calls (a picklable callable with no arguments).
            callback: joblib's completion hook, called on a pool thread.

        Returns:
            The pool's AsyncResult for the batch.

        Example:
            >>> backend.submit(batch, callback=on_done)
        """
        def done(value: Any) -> None:
            if callback is not None:
                callback(_Outcome(value=value))

        def failed(error: BaseException) -> None:
            if callback is not None:
                callback(_Outcome(error=error))

        return self._pool.apply_async(func, callback=done, error_callback=failed)

    def retrieve_result_callback(self, out: _Outcome) -> Any:
        """Turn a batch outcome into joblib's result (or raise the batch's error).

        Args:
            out: What :meth:`submit`'s callback received.

        Returns:
            The batch's list of results.

        Raises:
            Exception: The batch's error, as its own type.

        Example:
            >>> backend.retrieve_result_callback(_Outcome(value=[1]))
            [1]
        """
        if out.error is not None:
            raise out.error
        return out.value

    def terminate(self) -> None:
        """Stop the pool's workers (end of a Parallel call).

        Example:
            >>> backend.terminate()
        """
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
        self.reset_batch_stats()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Stop running batches after an error; restart the pool if joblib asks.

        Args:
            ensure_ready: Leave a working pool behind (for a managed Parallel).

        Example:
            >>> backend.abort_everything(ensure_ready=False)
        """
        self.terminate()
        if ensure_ready:
            self.configure(n_jobs=self._requested_n_jobs, parallel=self.parallel)


def register_ember() -> None:
    """Register the "ember" joblib backend.

    After this, ``joblib.parallel_backend("ember")`` (or ``parallel_config``) runs
    joblib's work, scikit-learn's ``n_jobs`` included, on ember. ember is started
    with ``ember.init()`` on first use if it is not running yet.

    Example:
        >>> register_ember()
        >>> with joblib.parallel_backend("ember"):
        ...     joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(3))
        [0, 1, 2]
    """
    joblib.register_parallel_backend("ember", EmberBackend)
