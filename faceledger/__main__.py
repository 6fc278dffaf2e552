"""`python -m faceledger`: the faceledger command."""

from faceledger.interfaces.cli.main import main

main()
