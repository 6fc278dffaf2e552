"""CLI commands over the service: collections, bulk indexing, search, faces and users."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.table import Table

from faceledger.service import api_model
from faceledger.interfaces.cli.options import member_argument, member_option
from faceledger.interfaces.cli.common import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_NEGATIVE, JsonOpt, id_column, RayOpt, box_text, review_hint, err, errors, out, pool, progress
from faceledger.errors import FaceledgerError, InvalidParameterError
from faceledger.service.operations import (
    DEFAULT_ASSOCIATE_THRESHOLD, DEFAULT_FACE_MATCH_THRESHOLD, DEFAULT_USER_MATCH_THRESHOLD, FaceService,
)
from faceledger.service.index_jobs import prepare_job, tasks
from faceledger.governance.bulk import BatchedIndex
from faceledger.interfaces.cli.gated import _Gated
from faceledger.settings import Settings
from faceledger.vision.workers import parallel_map

collection_app = typer.Typer(no_args_is_help=True, help="Create, list, describe and delete collections.")
faces_app = typer.Typer(no_args_is_help=True, help="List and delete the faces of a collection.")
users_app = typer.Typer(no_args_is_help=True, help="Users: groups of faces of one person.")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


PurposeOpt = typer.Option(None, "--purpose", help="Why this identification is run (the policy must allow it).")
CaseOpt = typer.Option(None, "--case", help="The case reference this identification belongs to.")
MaxFmrOpt = member_option("SearchFacesByImage", "MaxFalseMatchRate", "--max-fmr")


def _service(purpose: str | None = None, case: str | None = None) -> FaceService:
    return _Gated(purpose, case)  # type: ignore[return-value]


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


# The table's columns need about 105 characters (a face id is 36 and is never cut): on a narrower
# terminal (80 columns by default) each candidate is printed as two lines instead, so no figure is
# cut to an ellipsis.
_TABLE_WIDTH = 105


def _print_face_candidates(collection: str, matches) -> None:
    if not matches:
        out.print("no candidate reached the threshold")
        return
    if out.width >= _TABLE_WIDTH:
        table = Table("#", "similarity", "FMR", "strangers expected this high", title=f"candidates in {collection}",
                      title_justify="left")
        id_column(table, "face id")
        table.add_column("external id", overflow="fold")
        table.add_column("user", overflow="fold")
        for i, m in enumerate(matches, 1):
            table.add_row(str(i), f"{m.similarity:.1f}", _rate(m.false_match_rate), _rate(m.expected_false_candidates),
                          m.face.face_id, m.face.external_image_id or "-", m.face.user_id or "-")
        out.print(table)
        return
    out.print(f"candidates in {collection}:")
    for i, m in enumerate(matches, 1):
        out.print(f"{i}. similarity {m.similarity:.1f}, FMR {_rate(m.false_match_rate)}, "
                  f"{_rate(m.expected_false_candidates)} strangers expected this high", soft_wrap=True)
        out.print(f"   face {m.face.face_id}  external id {m.face.external_image_id or '-'}  "
                  f"user {m.face.user_id or '-'}", soft_wrap=True)


def _print_identification(r) -> None:
    i = r.identification
    if i is None:
        return
    bound = (f"; the policy bounds false positive identification at {i.max_false_positive_identification_rate:g}"
             if i.max_false_positive_identification_rate else "")
    out.print(f"gallery of {i.gallery_size:,} faces: threshold {i.effective_threshold:.1f} (asked {i.requested_threshold:.1f}), "
              f"FMR {_rate(i.false_match_rate_at_threshold)} per comparison, {_rate(i.expected_false_candidates)} "
              f"strangers expected above it per search{bound}. Ledger entry {r.ledger_entry}.", soft_wrap=True)


def _emit(operation: str, result, as_json: bool) -> bool:
    """Print a result as the cloud API's JSON when asked; True when it was printed."""
    if as_json:
        print(json.dumps(api_model.output(operation, result), indent=2))
    return as_json


# --- collections ------------------------------------------------------------------------------------


@collection_app.command("create")
def collection_create(
    name: str = member_argument("CreateCollection", "CollectionId"),
    store_images: bool = member_option("CreateCollection", "StoreImages", default=False),
    model: Optional[str] = member_option("CreateCollection", "Model"),
    as_json: bool = JsonOpt,
) -> None:
    """Create a collection. Only templates and face metadata are kept unless --store-images."""
    with errors(as_json):
        r = _service().create_collection(name, store_images=store_images, model=model)
        if not _emit("CreateCollection", r, as_json):
            out.print(f"created [bold]{name}[/] ({r.collection_arn}), model {r.face_model_version}")


@collection_app.command("list")
def collection_list(as_json: bool = JsonOpt) -> None:
    with errors(as_json):
        svc, names, token = _service(), [], None
        while True:
            page = svc.list_collections(next_token=token)
            names += page.collection_ids
            token = page.next_token
            if token is None:
                break
        if as_json:
            print(json.dumps({"CollectionIds": names}, indent=2))
            return
        table = Table("collection", "faces", "users", "model", title="collections", title_justify="left")
        for n in names:
            d = svc.describe_collection(n)
            table.add_row(n, str(d.face_count), str(d.user_count), d.face_model_version)
        out.print(table)


@collection_app.command("describe")
def collection_describe(name: str = member_argument("DescribeCollection", "CollectionId"), as_json: bool = JsonOpt) -> None:
    with errors(as_json):
        d = _service().describe_collection(name)
        if not _emit("DescribeCollection", d, as_json):
            out.print(f"[bold]{name}[/]: {d.face_count} faces, {d.user_count} users, model {d.face_model_version}, {d.collection_arn}")


@collection_app.command("delete")
def collection_delete(name: str = member_argument("DeleteCollection", "CollectionId"), yes: bool = typer.Option(False, "--yes", help="Do not ask."), as_json: bool = JsonOpt) -> None:
    """Delete a collection with every face, template and user in it."""
    with errors(as_json):
        svc = _service()
        d = svc.describe_collection(name)
        if not yes and not as_json:
            typer.confirm(f"delete {name} and its {d.face_count} faces?", abort=True)
        svc.delete_collection(name)
        if as_json:
            print(json.dumps({"StatusCode": 200}))
        else:
            out.print(f"deleted {name}")


# --- indexing ---------------------------------------------------------------------------------------


def _image_files(paths: list[Path], recursive: bool) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            children = sorted(p.rglob("*") if recursive else p.iterdir())
            images = [c for c in children if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                subfolders = [c for c in children if c.is_dir()]
                if subfolders and not recursive:
                    raise InvalidParameterError(f"{p} holds no image files, only {len(subfolders)} sub-folder(s): "
                                                "add -r to index the images inside them")
                raise InvalidParameterError(f"{p} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            yield from images
        else:
            yield p


def _not_indexed(r) -> list[str] | None:
    """Why an image's faces were not (all) indexed: NO_FACE, or each unindexed face's reasons."""
    if not r.face_records and not r.unindexed_faces:
        return ["NO_FACE"]
    return [", ".join(u.reasons) for u in r.unindexed_faces] or None


def external_id(path: Path, source: str) -> str | None:
    """The file's stem or its folder's name, made to fit the cloud API's ExternalImageId pattern."""
    if source == "none":
        return None
    raw = path.parent.name if source == "folder" else path.stem
    return (re.sub(r"[^a-zA-Z0-9_.\-:]", "_", raw) or "_")[:255]


def index(
    collection: str = member_argument("IndexFaces", "CollectionId"),
    # str, made Paths below: typer 0.29 coerces each Path through pydantic (~0.1-0.2 s of CPU per 2,000)
    paths: list[str] = typer.Argument(..., help="Image files or folders."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    external_ids: str = typer.Option("file", "--external-id", help="ExternalImageId from the 'file' name, the 'folder' name, or 'none'."),
    max_faces: Optional[int] = member_option("IndexFaces", "MaxFaces", note="Per image, largest first."),
    quality_filter: str = member_option("IndexFaces", "QualityFilter", default="AUTO"),
    workers: int = typer.Option(1, "--workers", help="Processes computing templates (one writer stores them)."),
    ray: Optional[str] = RayOpt,
    reindex: bool = typer.Option(False, "--reindex", help="Index images whose faces the collection already holds "
                                 "under the same ExternalImageId (by default they are skipped: a rerun after an "
                                 "interruption indexes each image once)."),
    as_json: bool = JsonOpt,
) -> None:
    """Index every face in the images. --json prints one line per image as it is stored (JSON Lines).

    Each image has its own ledger entries (IndexFaces, decided by the policy); images are stored
    in batches (governance.bulk: every intent committed before any face of its batch), and an
    image is reported once stored: an interrupted run keeps every image it reported, and running the same command again
    resumes it: an image (by the SHA-256 of its bytes) already indexed under the same
    ExternalImageId is skipped, unless --reindex.
    """
    if external_ids not in ("file", "folder", "none"):
        raise typer.BadParameter("--external-id must be file, folder or none")
    with errors(as_json):
        settings = Settings.load()
        gated = _Gated()
        svc = gated.gate.service
        if not gated.gate.policy.decide(gated.ctx, "IndexFaces").allowed:  # refused (and recorded) before any template is made
            gated.gate.call(gated.ctx, "IndexFaces", lambda **_: None, collection=collection)
        svc.check_index(collection, None, max_faces, quality_filter, None)
        info = svc.collections.get_collection(collection, counts=False)  # also: the collection exists
        keep_bytes = info.store_images
        settings = settings.replace(model=info.model.partition("@")[0])  # workers embed with the collection's model
        files = list(_image_files([Path(p) for p in paths], recursive))
        already = [] if reindex else [f for f in files if _indexed_before(svc, collection, f, external_ids)]
        skip = set(already)
        todo = [f for f in files if f not in skip]
        jobs = [(str(f), max_faces, quality_filter, keep_bytes) for f in todo]
        if already:
            err.print(f"{len(already)} of {len(files)} images were indexed into {collection} before: skipped "
                      "(--reindex to index them again)")
            if as_json:
                for f in already:
                    print(json.dumps({"Image": str(f), "AlreadyIndexed": True}), flush=True)
        indexed, unindexed, failed, skipped, done, interrupted = 0, Counter(), [], [], 0, False
        batches = BatchedIndex(gated.gate, gated.ctx, collection)
        with progress() as bar:
            task = bar.add_task(f"indexing into {collection}", total=len(jobs))
            done = len(already)

            def report(path: str, r) -> None:
                """An image's outcome once it is stored (or why it is not): counted, listed, printed."""
                nonlocal indexed, done
                if isinstance(r, (FaceledgerError, dict)):
                    failed.append((path, r if isinstance(r, dict) else {"code": r.code, "message": r.message}))
                    if as_json:
                        print(json.dumps({"Image": path, "error": failed[-1][1]}), flush=True)
                else:
                    indexed += len(r.face_records)
                    unindexed.update(reason for u in r.unindexed_faces for reason in u.reasons)
                    why = _not_indexed(r)
                    if why:
                        skipped.append((path, len(r.face_records), why))
                        unindexed.update(["NO_FACE"] if why == ["NO_FACE"] else [])
                    if as_json:
                        print(json.dumps({"Image": path, **api_model.output("IndexFaces", r)}), flush=True)
                done += 1
                bar.advance(task)

            try:
                for prepared_task in parallel_map(prepare_job, tasks(jobs, workers), settings, pool(workers, ray)):
                    for path, prepared, error in prepared_task:
                        if prepared is None:
                            report(path, error)
                            continue
                        for stored in batches.add(path, prepared, external_id(Path(path), external_ids)):
                            report(*stored)
            except KeyboardInterrupt:
                interrupted = True
            for stored in batches.flush():  # what the workers prepared is stored and reported, even when interrupted
                report(*stored)
            if interrupted:
                err.print(f"[yellow]interrupted after {done} of {len(files)} images: every image reported is stored[/]")
        skipped.sort()  # workers finish in any order; the summary lists images in a stable order
        summary = {"Images": done, "ImagesFound": len(files), "AlreadyIndexed": len(already), "FacesIndexed": indexed,
                   "UnindexedReasons": dict(unindexed),
                   "NotIndexed": [{"Image": p, "FacesIndexed": n, "Reasons": why} for p, n, why in skipped],
                   "Errors": len(failed), "Interrupted": interrupted}
        if as_json:
            print(json.dumps({"Summary": summary}), flush=True)
        else:
            of = f" of {len(files)}" if interrupted else ""
            out.print(f"{done}{of} images: [bold]{indexed}[/] faces indexed into {collection}")
            for reason, n in unindexed.most_common():
                out.print(f"  not indexed: {n} x {reason}")
            for p, n, why in skipped:
                out.print(f"  {p}: " + ("no face found" if why == ["NO_FACE"] else
                                        f"{n} indexed, not indexed: " + "; ".join(why)), soft_wrap=True, highlight=False)
            for path, e in failed:
                err.print(f"  [red]error[/] {path}: {e['message']}", soft_wrap=True, highlight=False)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if failed:
        raise typer.Exit(EXIT_INPUT)


def _indexed_before(svc, collection: str, path: Path, external_ids: str) -> bool:
    """Whether a previous run stored this image's faces (its bytes' SHA-256) under the same ExternalImageId."""
    import hashlib

    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return False  # the indexing run reports what is wrong with it
    return svc.collections.indexed_image(collection, digest, external_id(path, external_ids))


# --- search -------------------------------------------------------------------------------------------


def search(
    collection: str = member_argument("SearchFacesByImage", "CollectionId"),
    image: Path = typer.Argument(..., help="Image whose largest face is searched for."),
    max_faces: Optional[int] = member_option("SearchFacesByImage", "MaxFaces"),
    threshold: Optional[float] = member_option("SearchFacesByImage", "FaceMatchThreshold", "--threshold",
                                                 note=f"Default {DEFAULT_FACE_MATCH_THRESHOLD:g}."),
    max_fmr: Optional[float] = MaxFmrOpt,
    quality_filter: str = member_option("SearchFacesByImage", "QualityFilter", default="NONE"),
    purpose: Optional[str] = PurposeOpt,
    case: Optional[str] = CaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Search a collection with the largest face in IMAGE (identification: --purpose and --case,
    as the policy requires). Exit 0 with candidates, 1 with none."""
    with errors(as_json):
        r = _service(purpose, case).search_faces_by_image(
            collection, image, max_faces=max_faces, face_match_threshold=threshold, quality_filter=quality_filter,
            max_false_match_rate=max_fmr,
        )
        if not _emit("SearchFacesByImage", r, as_json):
            out.print(f"searched face: {box_text(r.searched_face_bounding_box)}, confidence {r.searched_face_confidence:.1f}")
            _print_identification(r)
            _print_face_candidates(collection, r.face_matches)
            out.print("[dim]Candidates are leads for a person to review, never an identification "
                      f"({review_hint(r.ledger_entry)}).[/]", soft_wrap=True)
    if not r.face_matches:
        raise typer.Exit(EXIT_NEGATIVE)


# --- faces --------------------------------------------------------------------------------------------


@faces_app.command("list")
def faces_list(
    collection: str = member_argument("ListFaces", "CollectionId"),
    max_results: Optional[int] = member_option("ListFaces", "MaxResults"),
    next_token: Optional[str] = member_option("ListFaces", "NextToken"),
    user_id: Optional[str] = member_option("ListFaces", "UserId"),
    as_json: bool = JsonOpt,
) -> None:
    with errors(as_json):
        r = _service().list_faces(collection, max_results=max_results, next_token=next_token, user_id=user_id)
        if not _emit("ListFaces", r, as_json):
            table = Table(title=f"faces in {collection}", title_justify="left")
            id_column(table, "face id")
            wide = out.width >= 120  # image ids too, where two whole UUIDs fit (always in --json)
            if wide:
                id_column(table, "image id")
            table.add_column("external id", overflow="fold")
            table.add_column("user", overflow="fold")
            table.add_column("box", overflow="fold")
            for f in r.faces:
                table.add_row(f.face_id, *([f.image_id] if wide else []), f.external_image_id or "-", f.user_id or "-",
                              box_text(f.bounding_box))
            out.print(table)
            if r.next_token:
                out.print(f"more: --next-token {r.next_token}")


@faces_app.command("delete")
def faces_delete(collection: str = member_argument("DeleteFaces", "CollectionId"), face_ids: list[str] = typer.Argument(...),
                 as_json: bool = JsonOpt) -> None:
    """Delete faces: their templates leave the database and the index."""
    with errors(as_json):
        r = _service().delete_faces(collection, face_ids)
        if not _emit("DeleteFaces", r, as_json):
            out.print(f"deleted {len(r.deleted_faces)} face(s)")
            for u in r.unsuccessful_face_deletions:
                out.print(f"  not deleted {u.face_id}: {', '.join(u.reasons)}")
    if r.unsuccessful_face_deletions:
        raise typer.Exit(EXIT_INPUT)


# --- users --------------------------------------------------------------------------------------------


@users_app.command("create")
def users_create(collection: str = member_argument("CreateUser", "CollectionId"), user_id: str = member_argument("CreateUser", "UserId"), as_json: bool = JsonOpt) -> None:
    with errors(as_json):
        _service().create_user(collection, user_id)
        print(json.dumps({})) if as_json else out.print(f"created user {user_id} in {collection}")


@users_app.command("delete")
def users_delete(collection: str = member_argument("DeleteUser", "CollectionId"), user_id: str = member_argument("DeleteUser", "UserId"), as_json: bool = JsonOpt) -> None:
    with errors(as_json):
        _service().delete_user(collection, user_id)
        print(json.dumps({})) if as_json else out.print(f"deleted user {user_id}")


@users_app.command("list")
def users_list(collection: str = member_argument("ListUsers", "CollectionId"), next_token: Optional[str] = member_option("ListUsers", "NextToken"), as_json: bool = JsonOpt) -> None:
    with errors(as_json):
        r = _service().list_users(collection, next_token=next_token)
        if not _emit("ListUsers", r, as_json):
            table = Table("user", "status", title=f"users in {collection}", title_justify="left")
            for u in r.users:
                table.add_row(u.user_id, u.user_status)
            out.print(table)


@users_app.command("associate")
def users_associate(
    collection: str = member_argument("AssociateFaces", "CollectionId"), user_id: str = member_argument("AssociateFaces", "UserId"), face_ids: list[str] = typer.Argument(...),
    threshold: Optional[float] = member_option("AssociateFaces", "UserMatchThreshold", "--threshold",
                                                 note=f"Default {DEFAULT_ASSOCIATE_THRESHOLD:g}."),
    as_json: bool = JsonOpt,
) -> None:
    with errors(as_json):
        r = _service().associate_faces(collection, user_id, face_ids, user_match_threshold=threshold)
        if not _emit("AssociateFaces", r, as_json):
            out.print(f"{len(r.associated_faces)} face(s) associated with {user_id} ({r.user_status})")
            for u in r.unsuccessful_face_associations:
                out.print(f"  not associated {u.face_id}: {', '.join(u.reasons)}")


@users_app.command("disassociate")
def users_disassociate(collection: str = member_argument("DisassociateFaces", "CollectionId"), user_id: str = member_argument("DisassociateFaces", "UserId"),
                       face_ids: list[str] = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    with errors(as_json):
        r = _service().disassociate_faces(collection, user_id, face_ids)
        if not _emit("DisassociateFaces", r, as_json):
            out.print(f"{len(r.disassociated_faces)} face(s) disassociated from {user_id} ({r.user_status})")
            for u in r.unsuccessful_face_disassociations:
                out.print(f"  not disassociated {u.face_id}: {', '.join(u.reasons)}")


@users_app.command("search")
def users_search(
    collection: str = member_argument("SearchUsers", "CollectionId"),
    image: Optional[Path] = typer.Option(None, "--image", help="Search with the largest face of this image."),
    user_id: Optional[str] = member_option("SearchUsers", "UserId", note="Or --image, or --face-id."),
    face_id: Optional[str] = member_option("SearchUsers", "FaceId", note="Or --image, or --user-id."),
    threshold: Optional[float] = member_option("SearchUsers", "UserMatchThreshold", "--threshold",
                                                 note=f"Default {DEFAULT_USER_MATCH_THRESHOLD:g}."),
    max_fmr: Optional[float] = MaxFmrOpt,
    max_users: Optional[int] = member_option("SearchUsers", "MaxUsers"),
    purpose: Optional[str] = PurposeOpt,
    case: Optional[str] = CaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Users whose faces match. Exit 0 with candidates, 1 with none."""
    with errors(as_json):
        svc = _service(purpose, case)
        if image is not None:
            r = svc.search_users_by_image(collection, image, user_match_threshold=threshold, max_users=max_users,
                                          max_false_match_rate=max_fmr)
            op = "SearchUsersByImage"
        else:
            r = svc.search_users(collection, user_id=user_id, face_id=face_id, user_match_threshold=threshold,
                                 max_users=max_users, max_false_match_rate=max_fmr)
            op = "SearchUsers"
        if not _emit(op, r, as_json):
            table = Table("#", "similarity", "false match rate", "user", "status", title=f"user candidates in {collection}",
                          title_justify="left")
            for i, m in enumerate(r.user_matches, 1):
                table.add_row(str(i), f"{m.similarity:.1f}", _rate(m.false_match_rate), m.user.user_id, m.user.user_status)
            _print_identification(r)
            out.print(table if r.user_matches else "no user reached the threshold")
    if not r.user_matches:
        raise typer.Exit(EXIT_NEGATIVE)
