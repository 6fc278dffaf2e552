"""A real PostgreSQL server for the tests: initdb into a temporary directory, `postgres` on a free
local port, stopped afterwards. PostgreSQL refuses to run as root, so as root it runs as nobody."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: the PostgreSQL tests need the server binaries")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(fsync: bool = False):
    """Yields a postgresql:// URL of a fresh, empty server (fsync off unless asked: tests need no
    durability across a power cut, benchmarks do)."""
    import psycopg

    root = tempfile.mkdtemp(prefix="faceledger-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:
        os.chmod(root, 0o777)
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = os.path.join(root, "data"), _free_port()
    subprocess.run([*as_user, _binary("initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True, cwd=root)
    log = open(os.path.join(root, "log"), "w")
    server = subprocess.Popen([*as_user, _binary("postgres"), "-D", data, "-p", str(port), "-k", root,
                               "-c", "listen_addresses=127.0.0.1", "-c", f"fsync={'on' if fsync else 'off'}"], stdout=log, stderr=log, cwd=root)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        for _ in range(300):
            try:
                psycopg.connect(url, connect_timeout=1).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None:
                    raise RuntimeError(f"postgres exited: {open(os.path.join(root, 'log')).read()[-2000:]}")
                time.sleep(0.1)
        else:
            raise RuntimeError("postgres did not accept connections within 30 s")
        yield url
    finally:
        server.terminate()  # SIGTERM: smart shutdown, then wait
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
