"""Starting a node manager process and finding a running one.

``ember.init()`` starts one tied to the driver (it exits with it); ``ember start
--head`` starts one that outlives its shell and records itself as this machine's
current session, which ``ember.init(address="auto")`` and ``ember stop`` find.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass


from .._wire.tokens import ClusterToken, given_token, new_token, read_token_file
from ..exceptions import EmberError
from .gpus import detect_accelerator_type, detect_gpu_ids
from .._resources import ACCELERATOR_RESOURCE_PREFIX, node_resource


@dataclass
class NodeProcess:
    """A node manager process this process started, and how to reach it."""
    proc: subprocess.Popen
    session_dir: str
    address: str
    token: bytes
    tcp_address: str = ""
    #: The head's dashboard ("" on other nodes or without one) and this node's metrics.
    dashboard_url: str = ""
    metrics_url: str = ""


def sessions_root() -> str:
    root = os.path.join(tempfile.gettempdir(), "ember-sessions")
    os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def _current_link() -> str:
    return os.path.join(sessions_root(), "current")


def node_resources(num_cpus: float | None, num_gpus: float | None, resources: dict | None,
                   object_store_memory: int | None) -> tuple[dict[str, float], list[int], int]:
    """(resource totals, GPU ids, store bytes) for this machine and the user's overrides.

    The ``node:<ip>`` resource is added by ``start_node``, which knows the node's address.
    """
    gpu_ids = detect_gpu_ids()
    if num_gpus is not None:
        gpu_ids = gpu_ids[:int(num_gpus)] if len(gpu_ids) >= num_gpus else list(range(int(num_gpus)))
    import psutil  # ~15 ms: only starting a node needs it, and `import ember` must stay fast
    total_memory = psutil.virtual_memory().total
    store_bytes = int(object_store_memory or min(total_memory * 0.3, 200 << 30))
    totals = {"CPU": float(os.cpu_count() if num_cpus is None else num_cpus),
              "GPU": float(len(gpu_ids)), "memory": float(int(total_memory * 0.7)),
              "object_store_memory": float(store_bytes)}
    model = detect_accelerator_type() if gpu_ids else None
    if model is not None:  # Ray's accelerator_type:<model>, what accelerator_type= asks for
        totals[ACCELERATOR_RESOURCE_PREFIX + model] = 1.0
    totals.update(resources or {})
    return totals, gpu_ids, store_bytes


#: Ray's ``_system_config`` keys ember understands -> node manager flags.
_SYSTEM_CONFIG_FLAGS = {"memory_usage_threshold": "--memory-usage-threshold",
                        "memory_monitor_refresh_ms": "--memory-monitor-refresh-ms"}


def start_node(totals: dict[str, float], gpu_ids: list[int], store_bytes: int,
               exit_with_first_driver: bool, system_config: dict | None = None,
               token: ClusterToken | None = None, host: str = "127.0.0.1", port: int = 0,
               head_address: str | None = None, started_by_cli: bool = False,
               dashboard: tuple[str, int] | None = ("127.0.0.1", 8265),
               metrics_export_port: int = 0,
               storage: str | None = None, resume_session: str | None = None,
               node_args: list[str] | None = None) -> NodeProcess:
    """Create a session directory (0700) with its token (0600) and start a node manager.

    Args:
        system_config: ``memory_usage_threshold`` (fraction of node memory above which
            the memory monitor kills a worker, default 0.95) and
            ``memory_monitor_refresh_ms`` (default 250; 0 turns the monitor off).

        token: the cluster's token: the one a head or node was given; None makes a new
            one (a head given none, or ``ember.init()``'s own cluster).
        host, port: where the node's TCP port binds (loopback unless told otherwise).
        head_address: ``tcp:HOST:PORT`` of the head to join; None starts a head.
        dashboard: (host, port) of the head's dashboard (port 8265 falls back to any free
            port when taken); None: no dashboard.
        metrics_export_port: this node's Prometheus endpoint (0: any free port).
        storage: a head's persistent control store: ``sqlite:///PATH``, ``redis://HOST:PORT``,
            or "session" for a SQLite file in the session directory; None: memory only.
        resume_session: the session directory of a head that died (``dead_head_session``):
            the new head takes it over, with its token and its storage.
        node_args: further node manager flags (heartbeat period, node timeout, ...).

    Raises:
        EmberError: the node manager did not come up.
    """
    # Every node offers node:<its address>, so a task can be pinned there (Ray's rule).
    totals = {**totals, node_resource(host): 1.0}
    unknown = set(system_config or {}) - set(_SYSTEM_CONFIG_FLAGS)
    if unknown:
        # Ray has hundreds of keys; a ported script should still start.
        warnings.warn(f"ember ignores the _system_config key(s) {', '.join(sorted(unknown))}; it "
                      f"understands {', '.join(sorted(_SYSTEM_CONFIG_FLAGS))}", RuntimeWarning,
                      stacklevel=3)
    if resume_session is not None:
        session_dir = resume_session
        # The dead head's sockets are files that would block binding the same paths.
        shutil.rmtree(os.path.join(session_dir, "sockets"), ignore_errors=True)
        os.makedirs(os.path.join(session_dir, "sockets"), mode=0o700)
        token = token if token is not None else _session_token(session_dir)
    else:
        session_dir = tempfile.mkdtemp(prefix="session-", dir=sessions_root())
        for sub in ("sockets", "logs"):
            os.makedirs(os.path.join(session_dir, sub), mode=0o700)
        token = token if token is not None else new_token()
        with open(os.open(os.path.join(session_dir, "token"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                          0o600), "w") as f:
            f.write(token.text())
    # The node manager reads (and drops) both: the token, and where it came from for its
    # messages (a join refused for the token names the setting to fix).
    env = {**os.environ, "EMBER_TOKEN": token.text(), "EMBER_TOKEN_SOURCE": token.source,
           "PYTHONPATH": os.pathsep.join([_package_root(), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "ember._node.manager", "--session-dir", session_dir,
            "--resources", json.dumps(totals), "--gpu-ids", json.dumps(gpu_ids),
            "--object-store-memory", str(store_bytes)]
    argv += ["--node-ip-address", host, "--port", str(port)]
    if head_address is not None:
        argv += ["--head-address", head_address]
    if storage is not None:
        argv += ["--storage", session_storage(session_dir) if storage == "session" else storage]
    argv += node_args or []
    if exit_with_first_driver:
        argv.append("--exit-with-first-driver")
    argv += ["--metrics-export-port", str(metrics_export_port)]
    if dashboard is None:
        argv.append("--no-dashboard")
    else:
        argv += ["--dashboard-host", dashboard[0], "--dashboard-port", str(dashboard[1])]
    for key, value in (system_config or {}).items():
        if key in _SYSTEM_CONFIG_FLAGS:
            argv += [_SYSTEM_CONFIG_FLAGS[key], str(float(value))]
    log = open(os.path.join(session_dir, "logs", "node_manager.log"), "ab")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
    log.close()
    line = proc.stdout.readline().decode()
    if not line.startswith("ready "):
        proc.wait()
        with open(os.path.join(session_dir, "logs", "node_manager.log"), errors="replace") as f:
            reason = f.read().strip().splitlines()[-1:] or ["no output"]
        if resume_session is None:  # a resumed session keeps its storage for the next try
            shutil.rmtree(session_dir, ignore_errors=True)
        raise EmberError(f"the node manager failed to start (exit code {proc.returncode}): {reason[0]}")
    _ready, unix_address, tcp_address = line.split()
    with open(os.path.join(session_dir, "node.json"), "w") as f:
        json.dump({"pid": proc.pid, "address": unix_address, "tcp_address": tcp_address,
                   "head": head_address is None, "cli": started_by_cli}, f)
    urls = read_http_urls(session_dir)
    return NodeProcess(proc, session_dir, unix_address, token.secret, tcp_address,
                       urls.get("dashboard_url", ""), urls.get("metrics_url", ""))


def read_http_urls(session_dir: str) -> dict[str, str]:
    """The node's ``dashboard_url`` and ``metrics_url`` ({} when it wrote none)."""
    try:
        with open(os.path.join(session_dir, "http.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def process_running(pid: int) -> bool:
    """True while ``pid`` runs. A zombie does not: a SIGKILLed node manager stays one until
    its new parent reaps it, and a head restarted meanwhile must not take it for alive."""
    import psutil  # the same: only looking for a running node needs it
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def session_storage(session_dir: str) -> str:
    """A head's default storage: a SQLite file in its session directory."""
    return f"sqlite://{os.path.join(session_dir, 'control.sqlite3')}"


def dead_head_session(port: int) -> str | None:
    """The session directory of a head `ember start` started on ``port`` that is no longer
    running (killed, crashed): a head started again on that port resumes it."""
    for session_dir, node in local_nodes(include_dead=True):
        if (node.get("head") and node.get("cli") and not process_running(node["pid"])
                and node.get("tcp_address", "").rsplit(":", 1)[-1] == str(port)):
            return session_dir
    return None


def make_current(session_dir: str) -> None:
    """Record ``session_dir`` as this machine's cluster for ``address="auto"``."""
    tmp = _current_link() + ".tmp"
    with open(tmp, "w") as f:
        f.write(session_dir)
    os.replace(tmp, _current_link())


def find_current() -> tuple[str, str, ClusterToken, int]:
    """(session dir, node address, token, node manager pid) of ``ember start``'s cluster.

    Raises:
        EmberError: no cluster is running on this machine.
    """
    try:
        with open(_current_link()) as f:
            session_dir = f.read().strip()
        with open(os.path.join(session_dir, "node.json")) as f:
            node = json.load(f)
        os.stat(os.path.join(session_dir, "token"))
    except (OSError, ValueError) as e:
        raise EmberError("no ember cluster is running on this machine: start one with "
                         "`ember start --head`, or call ember.init() without an address") from e
    if not process_running(node["pid"]):
        raise EmberError(f"the cluster recorded in {session_dir} is no longer running: start one "
                         "with `ember start --head`")
    return session_dir, node["address"], _session_token(session_dir), node["pid"]


def _session_token(session_dir: str) -> ClusterToken:
    """The cluster token: $EMBER_TOKEN if set, else the session's 0600 token file.

    Raises:
        InvalidOptionError: the token there is not usable (too short, unreadable).
    """
    given = given_token(None)
    return given if given is not None else read_token_file(
        os.path.join(session_dir, "token"), f"the session file {os.path.join(session_dir, 'token')}")


def local_nodes(include_dead: bool = False) -> list[tuple[str, dict]]:
    """(session dir, node.json) of every live (or also dead) node manager on this machine."""
    out = []
    for name in sorted(os.listdir(sessions_root())):
        path = os.path.join(sessions_root(), name, "node.json")
        try:
            with open(path) as f:
                node = json.load(f)
        except (OSError, ValueError):
            continue
        if include_dead or process_running(node["pid"]):
            out.append((os.path.dirname(path), node))
    return out


def find_by_tcp_address(address: str) -> tuple[str, str, ClusterToken, int]:
    """Like find_current, for the node listening on ``HOST:PORT`` (it must run here).

    Raises:
        EmberError: no node on this machine listens there.
    """
    host, _, port = address.rpartition(":")
    aliases = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost") else {host}
    for session_dir, node in local_nodes():
        n_host, _, n_port = node.get("tcp_address", "").removeprefix("tcp:").rpartition(":")
        if n_port == port and n_host in aliases:
            return session_dir, node["address"], _session_token(session_dir), node["pid"]
    raise EmberError(f"no ember node on this machine listens on {address}: drivers must run on a "
                     "node of the cluster (start one with `ember start --address ...`)")


def clear_current(session_dir: str) -> None:
    try:
        with open(_current_link()) as f:
            if f.read().strip() == session_dir:
                os.remove(_current_link())
    except OSError:
        pass


def _package_root() -> str:
    """The directory that makes ``import ember`` work in child processes (this module is
    ``ember/node_launcher.py`` under it, as ``ember/__init__.py`` is)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
