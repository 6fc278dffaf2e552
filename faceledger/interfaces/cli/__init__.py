"""The `faceledger` command."""
