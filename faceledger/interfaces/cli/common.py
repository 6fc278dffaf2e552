"""What every ``faceledger`` command shares: consoles, options, error handling, JSON views.

Exit codes: 0 success; 1 a negative answer (compare: no match; detect: an image without a face);
2 usage error; 3 bad input (image, parameter, missing file, unknown resource); 4 missing
dataset or model; 130 interrupted.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from faceledger.service import api_model
from faceledger.vision import quality as quality_mod
from faceledger.vision.engine import Face
from faceledger.errors import DatasetError, FaceledgerError, ModelFileError, ToolMissingError
from faceledger.service.operations import FaceDetail

EXIT_NEGATIVE, EXIT_INPUT, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 1, 3, 4, 130

out = Console()
err = Console(stderr=True)

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
RayOpt = typer.Option(None, "--ray", metavar="ADDRESS", help="Compute templates on a Ray cluster: host:6379, "
                      "ray://host:10001, auto, or local (start one here). Same results as a local run.")


def pool(workers: int | None, ray: str | None):
    """What parallel_map runs on: local worker processes, or a Ray cluster when --ray is given."""
    if ray:
        from faceledger.vision.workers import RayCluster

        return RayCluster(ray)
    return workers
DetectorOpt = typer.Option(None, "--detector", help="Face detector: hog, mmod or blazeface.")
FallbackOpt = typer.Option(None, "--fallback", help="Detector tried when the first finds nothing: mmod, hog, blazeface or none.")


@contextmanager
def errors(as_json: bool) -> Iterator[None]:
    """Turn typed errors into a readable message (or JSON) and a meaningful exit code."""
    try:
        yield
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(EXIT_INTERRUPTED)
    except (DatasetError, ModelFileError, ToolMissingError) as exc:
        fail(as_json, exc.code, str(exc), EXIT_ENVIRONMENT)
    except FaceledgerError as exc:
        fail(as_json, exc.code, str(exc), EXIT_INPUT)
    except FileNotFoundError as exc:
        fail(as_json, "FileNotFound", str(exc), EXIT_INPUT)


def fail(as_json: bool, code: str, message: str, exit_code: int) -> None:
    if as_json:
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        err.print(f"[red]error[/] ({code}): {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(exit_code)


def progress():
    """A progress bar on stderr (rich.progress is imported here: `compare` and `detect` show none)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=err, transient=False,
    )


def with_progress(description: str, work, *args, **kwargs):
    """Run ``work(*args, advance=..., on_total=..., **kwargs)`` under a progress bar on stderr."""
    with progress() as bar:
        task = bar.add_task(description, total=None)
        return work(*args, advance=lambda n: bar.advance(task, n), on_total=lambda n: bar.update(task, total=n), **kwargs)


def face_json(face: Face) -> dict:
    """The cloud API's FaceDetail, plus what faceledger adds: exposure, size, detector, filter verdicts."""
    q = face.quality
    return {
        **api_model.to_shape(FaceDetail.of(face), api_model.service_model().shape_for("FaceDetail")),
        "Exposure": {"Highlight": q.highlight, "Shadow": q.shadow},
        "FaceSizePixels": q.face_size,
        "Detector": face.detector,
        "QualityFilterFailures": {
            level.value: quality_mod.reasons(q, level)
            for level in (quality_mod.QualityFilter.LOW, quality_mod.QualityFilter.MEDIUM, quality_mod.QualityFilter.HIGH)
        },
    }


def id_column(table, header: str) -> None:
    """A column of ids a user copies into the next command (36-character UUIDs): never wrapped,
    folded or cut; the table's other columns give way."""
    table.add_column(header, no_wrap=True, min_width=36, overflow="ignore")


def review_hint(entry) -> str:
    """The command that reviews a search's candidates, as the user types it (by a reviewer: a
    principal other than the searcher when the policy separates duties)."""
    return f"a reviewer: faceledger review decide {entry} --decision confirmed|rejected|inconclusive --reason ..."


def box_text(b) -> str:
    return f"left {b.left:.2f} top {b.top:.2f} w {b.width:.2f} h {b.height:.2f}"
