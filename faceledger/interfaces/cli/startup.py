"""What a one-off command pays before and after its work (issue 25: `faceledger compare`): no
garbage collection of what every run imports and keeps until it exits.

A run imports some 400 modules; Python's cyclic collector scanned their objects again and again
while they loaded (56-71 ms of a `compare`, timed with gc.callbacks), and its passes at exit
scanned them all once more (last atexit hook to the process's end: 110-190 ms, now 34-49 ms),
though they live until the process ends. The command's entry (:func:`run`, the console script and
`python -m faceledger`) pauses it before anything heavy is imported (:func:`pause`; the package's
names are imported on first use for this); the command's start freezes what exists then and turns
the collector back on (:func:`resume`: a long command collects its own garbage as before, without
rescanning the imports); at exit, what the command left in cycles is collected (closing its
databases as usual) before the rest is frozen (:func:`finish`). Python does not promise to
finalise objects still alive at exit; everything the command made is collected as before.

This module imports nothing heavy: it runs before the command's modules load.
"""

from __future__ import annotations

import gc

_state = {"paused": False, "resumed": False}


def run() -> None:
    """The `faceledger` command: the collector paused, then the command line loaded and run."""
    pause()
    from faceledger.interfaces.cli.main import main

    main()


def pause() -> None:
    """Stop the cyclic collector while a command's modules load (the command's entry only: a test
    or a program that runs the app in a process of its own keeps its collector as it is)."""
    gc.disable()
    _state["paused"] = True


def resume() -> None:
    """The command starts: what was imported is kept for good (frozen, never scanned again) and
    the collector runs again for what the command makes. Nothing when :func:`pause` was not called."""
    if _state["paused"]:
        _state["paused"] = False
        _state["resumed"] = True
        gc.freeze()
        gc.enable()


def finish() -> None:
    """The command is done: collect its own cycles (their finalisers run: a database connection
    left in one is closed as before), then freeze everything so the interpreter's passes at exit
    have nothing to scan. Nothing when :func:`pause` was not called."""
    if _state["paused"] or _state["resumed"]:
        if _state["resumed"]:
            gc.collect()  # only what the command made: the imports are frozen
        gc.freeze()
