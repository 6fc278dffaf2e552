"""`python -m faceledger`: the faceledger command."""

from faceledger.interfaces.cli.startup import run

run()
