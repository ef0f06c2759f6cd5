"""``ember serve run | status | shutdown | deploy``: Serve from the command line.

    ember serve run module:app [--route-prefix /] [--port 8000]   # blocks; Ctrl-C shuts down
    ember serve deploy config.yaml                                # to the cluster of `ember start`
    ember serve status
    ember serve shutdown

``run`` joins the cluster started with ``ember start`` if there is one, else starts a
local one for as long as it runs. ``status``, ``shutdown`` and ``deploy`` need a
cluster started with ``ember start --head`` (Serve's actors there outlive this command).
The config file of ``deploy`` has Ray Serve's layout (``http_options``, ``applications``
with ``name``, ``route_prefix``, ``import_path``, ``args`` and per-deployment options).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import time
from typing import Any

import ember

from . import api
from .deployment import Application
from .exceptions import NotAnApplicationError, ServeConfigError, ServeError

logger = logging.getLogger("ember.serve.cli")


def import_application(import_path: str, args: dict[str, Any] | None = None) -> Application:
    """``module:attr`` -> the bound application it names (calling a builder with ``args``).

    Raises:
        NotAnApplicationError: the path names something that is not an application.
    """
    if ":" not in import_path:
        raise ServeConfigError(f"import path {import_path!r} must look like 'module:app' (the module "
                               "file and the bound application in it)")
    module_name, attr = import_path.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part)
    if not isinstance(target, Application) and callable(target) and not hasattr(target, "bind"):
        target = target(args or {})
    elif args:
        raise ServeConfigError(f"args were given for {import_path!r}, but it is already a bound application; "
                               "point import_path at a builder function taking a dict instead")
    if not isinstance(target, Application):
        raise NotAnApplicationError(f"{import_path!r} is {type(target).__name__}, not a bound application; "
                                    "define e.g. `app = MyDeployment.bind()` in the module")
    return target


def _connect(address: str | None, required: bool) -> None:
    if ember.is_initialized():
        return
    if address is None:
        try:
            ember.init(address="auto")
            return
        except Exception as e:  # no cluster started with `ember start`
            if required:
                raise ServeError("no ember cluster on this machine; start one with `ember start --head` "
                                 f"or pass --address ({e})") from None
            ember.init()
            return
    ember.init(address=address)


def _apply_overrides(app: Application, overrides: list[dict[str, Any]]) -> Application:
    """Per-deployment options from a config file, applied by deployment name."""
    by_name = {o["name"]: {k: v for k, v in o.items() if k != "name"} for o in overrides}
    seen: set[int] = set()

    def visit(node: Application) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        options = by_name.pop(node.deployment.name, None)
        if options:
            node._deployment = node.deployment.options(**options)
        for value in list(node._args) + list(node._kwargs.values()):
            if isinstance(value, Application):
                visit(value)

    visit(app)
    if by_name:
        raise ServeConfigError(f"the config names deployments {sorted(by_name)} that the application does not "
                               "have; check the names")
    return app


def _run(args: argparse.Namespace) -> int:
    app = import_application(args.import_path)
    # Ctrl-C and SIGTERM set a flag instead of raising KeyboardInterrupt at a random point
    # (e.g. inside a call to the controller), so shutdown always starts from one place.
    stop: list[int] = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    _connect(args.address, required=False)
    api.start(http_options={"host": args.host, "port": args.port})
    api.run(app, name=args.name, route_prefix=args.route_prefix)
    sys.stdout.write(f"Serving {args.import_path} at http://{args.host}:{args.port}{args.route_prefix} "
                     "(Ctrl-C to stop)\n")
    sys.stdout.flush()
    while not stop:
        time.sleep(0.1)
    sys.stdout.write("Shutting down Serve\n")
    api.shutdown()
    ember.shutdown()
    return 0


def _status(args: argparse.Namespace) -> int:
    _connect(args.address, required=True)
    st = api.status()
    lines = [f"proxy: http://{st.http_host}:{st.http_port}" if st.http_port else "proxy: not running",
             "applications:" if st.applications else "applications: none"]
    for name, a in st.applications.items():
        lines.append(f"  {name}: {a.status}  route_prefix={a.route_prefix}")
        if a.message:
            lines.append("    message: " + a.message.replace("\n", "\n      "))
        for dname, d in a.deployments.items():
            lines.append(f"    {dname}: {d.status}  replicas={d.replica_states}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _shutdown(args: argparse.Namespace) -> int:
    _connect(args.address, required=True)
    api.shutdown()
    sys.stdout.write("Serve shut down\n")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    import yaml
    with open(args.config) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict) or not isinstance(config.get("applications"), list):
        raise ServeConfigError(f"{args.config} needs an `applications:` list (Ray Serve's config layout)")
    _connect(args.address, required=True)
    api.start(http_options=config.get("http_options") or {})
    for spec in config["applications"]:
        if "import_path" not in spec:
            raise ServeConfigError(f"application {spec.get('name')!r} in {args.config} has no import_path")
        app = import_application(spec["import_path"], spec.get("args"))
        app = _apply_overrides(app, spec.get("deployments") or [])
        api.run(app, name=spec.get("name", "default"), route_prefix=spec.get("route_prefix", "/"))
        sys.stdout.write(f"deployed {spec.get('name', 'default')} ({spec['import_path']})\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ember serve ...`` (``argv`` without the ``serve`` word)."""
    parser = argparse.ArgumentParser(prog="ember serve", description="Serve applications over HTTP")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="deploy module:app and serve until Ctrl-C")
    run.add_argument("import_path", help="module:app, a bound application (e.g. `app = Model.bind()`)")
    run.add_argument("--name", default="default")
    run.add_argument("--route-prefix", default="/")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--address", help="cluster to join (default: this machine's, else a new local one)")
    run.set_defaults(fn=_run)
    for name, fn, text in (("status", _status, "applications and deployments with their status"),
                           ("shutdown", _shutdown, "stop every application and the proxy")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--address", help="cluster address (default: this machine's)")
        p.set_defaults(fn=fn)
    deploy = sub.add_parser("deploy", help="deploy the applications of a Ray Serve style YAML config")
    deploy.add_argument("config")
    deploy.add_argument("--address", help="cluster address (default: this machine's)")
    deploy.set_defaults(fn=_deploy)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ServeError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
