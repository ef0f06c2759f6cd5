"""Ray programs run after changing the import: lazy submodules, ember.cloudpickle, util
modules, placement groups by name and captured children, the setup hook, tqdm_ray.

Written as a Ray user writes them (``import ember as ray``), against Ray's documented
behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import ember
import ember as ray
from ember.exceptions import InvalidOptionError, RuntimeEnvSetupError
from ember.util import get_placement_group
from ember.util.placement_group import placement_group, remove_placement_group
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(60)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_driver(code: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """A driver script of its own (a fresh process: what a user runs)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout_s, cwd=ROOT)


# --- modules reachable as in Ray ---------------------------------------------------------------


def test_import_ember_loads_none_of_the_new_modules() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, ember; print(sorted(m for m in sys.modules "
                          "if m.startswith(('ember.util', 'ember.experimental', 'ember.cloudpickle', "
                          "'tqdm'))))"], capture_output=True, text=True, timeout=50, check=True).stdout
    assert out.strip() == "[]"


def test_ray_data_and_the_util_modules_are_attributes_of_the_package() -> None:
    out = _run_driver("""
        import ember as ray
        print(ray.data.range(3).count(), ray.cloudpickle.loads(ray.cloudpickle.dumps(lambda: 5))(),
              ray.util.metrics.Counter.__name__, ray.util.accelerators.NVIDIA_TESLA_V100,
              callable(ray.util.get_placement_group))
        from ember.experimental import tqdm_ray
        print(tqdm_ray.tqdm.__name__, ray.experimental.tqdm_ray is tqdm_ray)
        ray.shutdown()
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "5", "Counter", "V100", "True", "tqdm", "True"]


def test_a_ray_program_runs_through_data_queue_and_actor_pool_as_attributes() -> None:
    """A small Ray program, only the import changed: every library reached as an attribute."""
    out = _run_driver("""
        import ember as ray

        ray.init(num_cpus=2)
        squares = ray.data.range(8).map(lambda row: {"id": row["id"] ** 2})
        total = sum(row["id"] for row in squares.take_all())

        q = ray.util.queue.Queue()

        @ray.remote
        def produce(q, n):
            for i in range(n):
                q.put(i)

        ray.get(produce.remote(q, 5))
        got = [q.get(timeout=10) for _ in range(5)]

        @ray.remote
        class Doubler:
            def double(self, x):
                return 2 * x

        pool = ray.util.ActorPool([Doubler.remote(), Doubler.remote()])
        doubled = list(pool.map(lambda a, v: a.double.remote(v), got))

        @ray.remote
        def countdown(n):
            for i in range(n, 0, -1):
                yield i

        gen = countdown.remote(3)
        assert isinstance(gen, ray.ObjectRefGenerator)
        streamed = [ray.get(ref) for ref in gen]
        print(total, got, doubled, streamed)
        ray.shutdown()
    """, timeout_s=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "140 [0, 1, 2, 3, 4] [0, 2, 4, 6, 8] [3, 2, 1]"


def test_accelerator_constants_are_rays() -> None:
    from ember.util import accelerators
    assert (accelerators.NVIDIA_TESLA_V100, accelerators.NVIDIA_A100, accelerators.NVIDIA_H100,
            accelerators.GOOGLE_TPU_V4, accelerators.AMD_INSTINCT_MI300x) == (
        "V100", "A100", "H100", "TPU-V4", "AMD-Instinct-MI300X-OAM")


# --- an ObjectRef pickled by the user ----------------------------------------------------------


@ray.remote
class Reader:
    def read(self, blob: bytes) -> object:
        return ray.get(ray.cloudpickle.loads(blob), timeout=20)


@pytest.mark.parametrize("value", [123, b"x" * (1 << 20)], ids=["inline", "stored"])
def test_a_ref_pickled_with_cloudpickle_can_be_got_in_an_actor(ember_local, value) -> None:
    """Ray's out-of-band serialization: the object stays reachable while its owner lives."""
    import cloudpickle
    ref = ray.put(value)
    blob = cloudpickle.dumps(ref)
    assert ray.get(Reader.remote().read.remote(blob), timeout=30) == value
    del ref  # the bytes pinned it: still readable
    assert ray.get(Reader.remote().read.remote(blob), timeout=30) == value


def test_copying_a_ref_does_not_pin_its_object(ember_local) -> None:
    import copy
    ref = ray.put(b"x" * 200_000)
    table = ember._client.context.objects
    before = table.counts[ref.id]
    clones = [copy.copy(ref), copy.deepcopy({"r": ref})["r"]]
    assert clones[0] == ref and clones[1] == ref and ray.get(clones[1]) == b"x" * 200_000
    assert table.counts[ref.id] == before + 2
    del clones
    table.drain_releases()
    assert table.counts[ref.id] == before  # nothing left pinned


# --- placement groups: by name, and children captured ----------------------------------------


@ray.remote(num_cpus=0.5)
def group_of_child() -> str | None:
    pg = ray.util.get_current_placement_group()
    return pg.id.hex() if pg is not None else None


@ray.remote(num_cpus=0.5)
def parent() -> tuple:
    """Waits on a child task and a child actor: with capture they run in the group too."""
    child = ray.get(group_of_child.remote(), timeout=30)
    actor = GroupActor.remote()
    in_actor = ray.get(actor.group.remote(), timeout=30)
    ray.kill(actor)
    return child, in_actor, ray.get_runtime_context().should_capture_child_tasks_in_placement_group


@ray.remote(num_cpus=0.5)
class GroupActor:
    def group(self) -> str | None:
        pg = ray.util.get_current_placement_group()
        return pg.id.hex() if pg is not None else None


def test_captured_children_run_in_the_group_with_the_whole_cluster_reserved(ember_local) -> None:
    """The group holds every CPU: children outside it could never start (the hang this fixes)."""
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], name="compat_capture")
    assert pg.wait(30)
    assert get_placement_group("compat_capture") == pg
    hexid = pg.id.hex()
    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    assert ray.get(parent.options(scheduling_strategy=strategy).remote(), timeout=30) == (hexid, hexid, True)
    # Ray's older spelling, as options:
    legacy = parent.options(placement_group=pg, placement_group_capture_child_tasks=True)
    assert ray.get(legacy.remote(), timeout=30) == (hexid, hexid, True)
    # capture=True added to a strategy that did not ask for it:
    plain = PlacementGroupSchedulingStrategy(pg)
    added = parent.options(scheduling_strategy=plain, placement_group_capture_child_tasks=True)
    assert ray.get(added.remote(), timeout=30) == (hexid, hexid, True)
    assert ray.get(group_of_child.options(placement_group=pg, placement_group_bundle_index=1).remote(),
                   timeout=30) == hexid
    remove_placement_group(pg)


def test_placement_group_option_mistakes_are_typed_errors(ember_local) -> None:
    pg = placement_group([{"CPU": 0.5}])
    with pytest.raises(InvalidOptionError, match="needs a placement group"):
        group_of_child.options(placement_group_capture_child_tasks=True).remote()
    with pytest.raises(InvalidOptionError, match="both placement_group= and scheduling_strategy="):
        group_of_child.options(placement_group=pg, scheduling_strategy="SPREAD").remote()
    with pytest.raises(InvalidOptionError, match="must be a PlacementGroup"):
        group_of_child.options(placement_group="pg-name").remote()
    with pytest.raises(InvalidOptionError, match="must be True or False"):
        group_of_child.options(placement_group_capture_child_tasks="yes")
    with pytest.raises(ValueError, match="no placement group named 'nope'"):
        get_placement_group("nope")
    with pytest.raises(ValueError, match="non-empty name"):
        get_placement_group("")
    remove_placement_group(pg)
    assert ray.get(group_of_child.remote(), timeout=30) is None  # the runtime keeps working


# --- worker_process_setup_hook -----------------------------------------------------------------


def _set_marker() -> None:
    os.environ["EMBER_HOOK_MARK"] = f"set in {os.getpid()}"


def _failing_hook() -> None:
    raise RuntimeError("the hook broke")


@ray.remote
def read_marker() -> tuple[str | None, int]:
    return os.environ.get("EMBER_HOOK_MARK"), os.getpid()


@ray.remote
class MarkerActor:
    def read(self) -> str | None:
        return os.environ.get("EMBER_HOOK_MARK")


@pytest.mark.parametrize("hook", [_set_marker, "tests.core.test_ray_compat._set_marker"],
                         ids=["callable", "module path"])
def test_the_setup_hook_runs_in_each_worker_before_its_first_task(hook) -> None:
    ray.shutdown()
    ray.init(num_cpus=1, runtime_env={"worker_process_setup_hook": hook})
    try:
        marker, pid = ray.get(read_marker.remote(), timeout=30)
        assert marker == f"set in {pid}"
        assert ray.get(MarkerActor.remote().read.remote(), timeout=30).startswith("set in ")
        assert "EMBER_HOOK_MARK" not in os.environ  # not run in the driver (as in Ray)
    finally:
        ray.shutdown()


def test_a_failing_hook_is_a_typed_error_for_every_task_and_the_next_job_runs() -> None:
    ray.shutdown()
    ray.init(num_cpus=1, runtime_env={"worker_process_setup_hook": _failing_hook})
    try:
        with pytest.raises(RuntimeEnvSetupError, match="(?s)_failing_hook.*the hook broke.*Fix the hook"):
            ray.get(read_marker.remote(), timeout=30)
        with pytest.raises(ray.exceptions.ActorDiedError, match="the hook broke"):
            ray.get(MarkerActor.remote().read.remote(), timeout=30)
    finally:
        ray.shutdown()
    ray.init(num_cpus=1)
    try:
        assert ray.get(read_marker.remote(), timeout=30)[0] is None
    finally:
        ray.shutdown()


@pytest.mark.parametrize("hook, words", [
    (42, "callable taking no arguments or a 'module.function' path"),
    ("no_dots", "'module.function' path"),
])
def test_a_malformed_hook_is_refused_by_init(hook, words) -> None:
    ray.shutdown()
    with pytest.raises(InvalidOptionError, match=words):
        ray.init(num_cpus=1, runtime_env={"worker_process_setup_hook": hook})
    assert not ray.is_initialized()


def test_the_hook_is_job_wide_only(ember_local) -> None:
    with pytest.raises(InvalidOptionError, match="job-wide"):
        read_marker.options(runtime_env={"worker_process_setup_hook": _set_marker})


# --- tqdm_ray ----------------------------------------------------------------------------------


def test_bars_from_many_tasks_are_drawn_together_on_the_driver() -> None:
    """Ray's tqdm_ray example, import changed: no raw state line reaches the output."""
    out = _run_driver("""
        import time
        import ember as ray
        from ember.experimental.tqdm_ray import tqdm, manager

        @ray.remote
        def f(name):
            for x in tqdm(range(20), desc=name, flush_interval_s=0):
                pass
            return name

        ray.init(num_cpus=2)
        assert ray.get([f.remote("task1"), f.remote("task2"), f.remote("task3")]) == ["task1", "task2", "task3"]
        for _ in tqdm(range(4), desc="driver"):
            pass
        deadline = time.monotonic() + 20
        while manager().closed_count < 4 and time.monotonic() < deadline:
            time.sleep(0.05)  # the tasks' states travel with their log lines, after their results
        print("open bars:", manager().open_bars())
        ray.shutdown()
    """)
    assert out.returncode == 0, out.stderr
    assert "open bars: []" in out.stdout
    final = out.stderr.replace("\r", "\n")
    for name in ("task1", "task2", "task3"):
        assert any(name in line and "20/20" in line for line in final.splitlines()), final
    assert any(line.startswith("driver") and "4/4" in line for line in final.splitlines())
    assert "ember-progress" not in out.stderr + out.stdout


def test_tqdm_ray_bad_input() -> None:
    from ember.experimental.tqdm_ray import tqdm
    with pytest.raises(ValueError, match="total"):
        tqdm(total=-1)
    with pytest.raises(ValueError, match="without an iterable"):
        list(bar := tqdm(total=3))
    bar.close()


# --- accelerator_type ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, model", [
    ("NVIDIA H200", "H200"), ("Tesla V100-SXM2-16GB", "V100"), ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA A10G", "A10G"), ("Tesla T4", "T4"), ("NVIDIA H100 80GB HBM3", "H100"), ("", None),
])
def test_a_gpu_model_is_named_as_ray_names_it(name, model) -> None:
    from ember._node.gpus import accelerator_type_of
    assert accelerator_type_of(name) == model


def test_accelerator_type_runs_where_that_model_is() -> None:
    from ember.util.accelerators import NVIDIA_TESLA_V100
    ray.shutdown()
    ray.init(num_cpus=1, resources={"accelerator_type:V100": 1})
    try:
        shape = ray.get(_assigned.options(accelerator_type=NVIDIA_TESLA_V100).remote(), timeout=30)
        assert shape == {"CPU": 1.0, "accelerator_type:V100": 0.001}
        with pytest.raises(InvalidOptionError, match="accelerator_type must be a type name"):
            _assigned.options(accelerator_type=100)
        with pytest.warns(RuntimeWarning, match="accelerator_type:A100"):
            ref = _assigned.options(accelerator_type="A100").remote()  # no node has one
            with pytest.raises(ray.exceptions.GetTimeoutError):
                ray.get(ref, timeout=2)
        ray.cancel(ref)
        assert ray.get(_assigned.remote(), timeout=30) == {"CPU": 1.0}  # the runtime keeps working
    finally:
        ray.shutdown()


@ray.remote
def _assigned() -> dict[str, float]:
    return ray.get_runtime_context().get_assigned_resources()
