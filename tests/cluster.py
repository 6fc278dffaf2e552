"""Real servers for the scale-out tests: a Milvus Lite gRPC server and a local Ray head node,
each on a free local port in a temporary directory, stopped afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .postgres import _free_port

BIN = Path(sys.executable).parent


class MilvusServer:
    """``milvus-lite server``: the Milvus engine behind a gRPC port, as a cluster's proxy is."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="faceledger-milvus-")
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        from pymilvus import MilvusClient

        self.process = subprocess.Popen(
            [str(BIN / "milvus-lite"), "server", "--data-dir", os.path.join(self.root, "data"), "--host", "127.0.0.1",
             "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                MilvusClient(self.uri, timeout=2).close()
                return
            except Exception:
                if self.process.poll() is not None:
                    raise RuntimeError("milvus-lite server exited at start")
                time.sleep(0.1)
        raise RuntimeError("milvus-lite server did not accept connections within 30 s")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextmanager
def milvus_server():
    server = MilvusServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.root, ignore_errors=True)


@contextmanager
def ray_head(cpus: int = 2):
    """A one-node Ray cluster (``ray start --head``); yields its address."""
    root = tempfile.mkdtemp(prefix="r", dir="/tmp")  # Ray's socket paths must stay short
    port = _free_port()
    env = {**os.environ, "RAY_TMPDIR": root}
    subprocess.run([str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", str(cpus),
                    "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", root],
                   check=True, capture_output=True, env=env)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)
