"""Thin translations onto the gate: the CLI and the HTTP service."""
