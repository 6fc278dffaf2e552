"""The ASGI entry point uvicorn imports in each worker: `faceledger.server.asgi:app`."""

from faceledger.interfaces.http.app import create_app

app = create_app()
