"""How the benchmarks start the servers: the HTTP floor, ``ledgerhook serve`` and the worker.

The floor must run on exactly the server ``ledgerhook serve`` uses, with the same worker count and
flags, or the ratio measures the servers instead of Ledgerhook. :data:`UVICORN_FLAGS` mirrors what
``ledgerhook.cli.serve`` passes to uvicorn; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bench.common import VENV_BIN, Process

# What ``ledgerhook.cli.serve.cmd_serve`` passes to ``uvicorn.run`` (bench.noop_app.main uses the
# same keywords for the floor), recorded in the results.
UVICORN_FLAGS = (
    "loop=uvloop",
    "http=httptools",
    "lifespan=on",
    "access_log=False",
    "log_config=None",
    "proxy_headers=False",
    "server_header=False",
)


def floor(port: int, workers: int, env: Mapping[str, str], logdir: Path) -> Process:
    cmd = [
        str(VENV_BIN / "python"),
        "-m",
        "bench.noop_app",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return Process("floor", cmd, env, logdir)


def serve(port: int, workers: int, env: Mapping[str, str], logdir: Path) -> Process:
    cmd = [
        str(VENV_BIN / "ledgerhook"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return Process("serve", cmd, env, logdir)


def worker(
    env: Mapping[str, str], logdir: Path, *, burst: bool = False, name: str = "worker"
) -> Process:
    cmd = [str(VENV_BIN / "ledgerhook"), "worker", *(["--burst"] if burst else [])]
    return Process(name, cmd, env, logdir)


def sequencer(env: Mapping[str, str], logdir: Path, *, name: str = "sequencer") -> Process:
    """A sequencer candidate alone (it leads: nothing else runs one against the database)."""
    return Process(name, [str(VENV_BIN / "ledgerhook"), "sequencer"], env, logdir)
