"""The face operations of the cloud API (collections, faces, users, search) over engine + store.

Every interface (Python, CLI, HTTP) calls these methods; none holds logic of its own. Arguments
are checked against botocore's Rekognition model (``api_model.check``), and results are
dataclasses whose field names are the model's member names in snake_case, so the wire layer can
shape them generically (``api_model.to_shape``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from faceledger.service import api_model, scope
from faceledger.service.accounts import AccountStore
from faceledger.service.scope import Admission
from faceledger.vision import imaging, quality
from faceledger.scoring.calibration import CalibrationMissingError, fmr_of_similarity, similarity_of_fmr
from faceledger.models.embedding import normalise
from faceledger.vision.engine import BoundingBox, CompareResult, Detection, Face, FaceEngine, Landmark
from faceledger.vision.landmarks import ALL_TYPES, DEFAULT_TYPES
from faceledger.errors import (
    FaceledgerError, InvalidPaginationTokenError, InvalidParameterError, ModelMismatchError, NoFaceError, ProbeQualityError,
    ResourceNotFoundError, ServiceQuotaExceededError, UncalibratedModelError,
)
from faceledger.vision.imaging import ImageSource
from faceledger.service.limits import Limits
from faceledger.vision.quality import QualityFilter
from faceledger.scoring.scoring import Scoring
from faceledger.models.registry import ModelNotFoundError
from faceledger.store import FaceStore, NewFace, StoredFace

#: Defaults the cloud API documents (thresholds, filters), and ours where it states none.
DEFAULT_FACE_MATCH_THRESHOLD = 80.0  # SearchFaces, SearchFacesByImage (documented)
DEFAULT_USER_MATCH_THRESHOLD = 80.0  # SearchUsers, SearchUsersByImage (documented)
DEFAULT_ASSOCIATE_THRESHOLD = 75.0  # AssociateFaces (documented)
DEFAULT_MAX_FACES = 80  # search results (ours)
DEFAULT_MAX_USERS = 10  # user search results (ours)
DEFAULT_PAGE = {"ListFaces": 1000, "ListCollections": 1000, "ListUsers": 500}  # ours
MAX_FACES_PER_IMAGE = 100  # faces considered per image, largest first, as the cloud API does
MAX_FACES_PER_USER = 100
#: CreateCollection's tag that chooses the collection's model (other tags are accepted and not kept).
MODEL_TAG = "faceledger:model"
#: Attributes faceledger refuses: it never infers sex, age, emotion or appearance traits.
REFUSED_ATTRIBUTES = {
    "AGE_RANGE", "BEARD", "EMOTIONS", "EYE_DIRECTION", "EYEGLASSES", "EYES_OPEN", "GENDER",
    "MOUTH_OPEN", "MUSTACHE", "FACE_OCCLUDED", "SMILE", "SUNGLASSES",
}


# --- result shapes (snake_case of the Rekognition members) -----------------------------------------


@dataclass(frozen=True)
class Pose:
    roll: float
    yaw: float
    pitch: float


@dataclass(frozen=True)
class ImageQuality:
    brightness: float
    sharpness: float


@dataclass(frozen=True)
class FaceDetail:
    bounding_box: BoundingBox
    confidence: float
    landmarks: tuple[Landmark, ...]
    pose: Pose
    quality: ImageQuality

    @classmethod
    def of(cls, face: Face, attributes: Sequence[str] | None = None) -> "FaceDetail":
        """``attributes`` as DetectFaces takes them: with ALL, every landmark type the cloud API
        lists; otherwise its DEFAULT five (eyeLeft, eyeRight, nose, mouthLeft, mouthRight). A
        face without mesh landmarks (landmark_model = "none") keeps dlib's 5 alignment points."""
        q = face.quality
        wanted = ALL_TYPES if "ALL" in (attributes or ()) else DEFAULT_TYPES
        marks = tuple(m for m in face.face_landmarks if m.type in wanted) or face.landmarks
        return cls(face.bounding_box, face.confidence, marks, Pose(q.pose.roll, q.pose.yaw, q.pose.pitch),
                   ImageQuality(q.brightness, q.sharpness))


@dataclass(frozen=True)
class FaceRef:
    """The cloud API's ``Face``: a stored face's metadata."""

    face_id: str
    bounding_box: BoundingBox
    image_id: str
    external_image_id: str | None
    confidence: float
    index_faces_model_version: str
    user_id: str | None = None

    @classmethod
    def of(cls, f: StoredFace, model: str) -> "FaceRef":
        return cls(f.face_id, BoundingBox(*f.box), f.image_id, f.external_image_id, f.confidence, model, f.user_id)


@dataclass(frozen=True)
class FaceRecord:
    face: FaceRef
    face_detail: FaceDetail


@dataclass(frozen=True)
class UnindexedFace:
    reasons: list[str]
    face_detail: FaceDetail


@dataclass(frozen=True)
class FaceMatch:
    similarity: float
    face: FaceRef
    false_match_rate: float | None = None  # faceledger's: the share of strangers scoring this high
    expected_false_candidates: float | None = None  # gallery size x false_match_rate


@dataclass(frozen=True)
class DetectFacesResult:
    face_details: list[FaceDetail]
    orientation_correction: str


@dataclass(frozen=True)
class ComparedSourceImageFace:
    bounding_box: BoundingBox
    confidence: float


@dataclass(frozen=True)
class CompareFacesMatch:
    similarity: float
    face: FaceDetail  # shaped as the cloud API's ComparedFace
    false_match_rate: float | None = None


@dataclass(frozen=True)
class CompareFacesResult:
    source_image_face: ComparedSourceImageFace
    face_matches: list[CompareFacesMatch]
    unmatched_faces: list[FaceDetail]
    source_image_orientation_correction: str
    target_image_orientation_correction: str


@dataclass(frozen=True)
class CreateCollectionResult:
    status_code: int
    collection_arn: str
    face_model_version: str


@dataclass(frozen=True)
class DescribeCollectionResult:
    face_count: int
    face_model_version: str
    collection_arn: str
    creation_timestamp: float
    user_count: int


@dataclass(frozen=True)
class DeleteCollectionResult:
    status_code: int


@dataclass(frozen=True)
class ListCollectionsResult:
    collection_ids: list[str]
    face_model_versions: list[str]
    next_token: str | None


@dataclass(frozen=True)
class IndexFacesResult:
    face_records: list[FaceRecord]
    orientation_correction: str
    face_model_version: str
    unindexed_faces: list[UnindexedFace]


@dataclass(frozen=True)
class ListFacesResult:
    faces: list[FaceRef]
    next_token: str | None
    face_model_version: str


@dataclass(frozen=True)
class UnsuccessfulFaceDeletion:
    face_id: str
    user_id: str | None
    reasons: list[str]


@dataclass(frozen=True)
class DeleteFacesResult:
    deleted_faces: list[str]
    unsuccessful_face_deletions: list[UnsuccessfulFaceDeletion]


@dataclass(frozen=True)
class SearchFacesResult:
    searched_face_id: str
    face_matches: list[FaceMatch]
    face_model_version: str
    identification: Identification | None = None
    ledger_entry: int | None = None


@dataclass(frozen=True)
class SearchFacesByImageResult:
    searched_face_bounding_box: BoundingBox
    searched_face_confidence: float
    face_matches: list[FaceMatch]
    face_model_version: str
    identification: Identification | None = None
    ledger_entry: int | None = None
    probe_quality: dict | None = None  # for the ledger and its reviewer: how good the searched face was


@dataclass(frozen=True)
class User:
    user_id: str
    user_status: str


@dataclass(frozen=True)
class ListUsersResult:
    users: list[User]
    next_token: str | None


@dataclass(frozen=True)
class AssociatedFace:
    face_id: str


@dataclass(frozen=True)
class UnsuccessfulFaceAssociation:
    face_id: str
    user_id: str | None
    confidence: float | None
    reasons: list[str]


@dataclass(frozen=True)
class AssociateFacesResult:
    associated_faces: list[AssociatedFace]
    unsuccessful_face_associations: list[UnsuccessfulFaceAssociation]
    user_status: str


@dataclass(frozen=True)
class DisassociatedFace:
    face_id: str


@dataclass(frozen=True)
class UnsuccessfulFaceDisassociation:
    face_id: str
    user_id: str | None
    reasons: list[str]


@dataclass(frozen=True)
class DisassociateFacesResult:
    disassociated_faces: list[DisassociatedFace]
    unsuccessful_face_disassociations: list[UnsuccessfulFaceDisassociation]
    user_status: str


@dataclass(frozen=True)
class MatchedUser:
    user_id: str
    user_status: str


@dataclass(frozen=True)
class UserMatch:
    similarity: float
    user: MatchedUser
    false_match_rate: float | None = None
    expected_false_candidates: float | None = None


@dataclass(frozen=True)
class Identification:
    """What faceledger adds to every 1:N result: how the threshold was set for this gallery."""

    gallery_size: int
    requested_threshold: float  # Similarity asked for (or the default)
    effective_threshold: float  # after the gallery-size bound and any FMR target
    false_match_rate_at_threshold: float | None
    expected_false_candidates: float | None  # gallery size x FMR at the effective threshold
    max_false_positive_identification_rate: float | None  # the policy's bound, when one applies


@dataclass(frozen=True)
class SearchedFace:
    face_id: str


@dataclass(frozen=True)
class SearchedUser:
    user_id: str


@dataclass(frozen=True)
class SearchedFaceDetails:
    face_detail: FaceDetail


@dataclass(frozen=True)
class UnsearchedFace:
    face_details: FaceDetail
    reasons: list[str]


@dataclass(frozen=True)
class SearchUsersResult:
    user_matches: list[UserMatch]
    face_model_version: str
    searched_face: SearchedFace | None = None
    searched_user: SearchedUser | None = None
    identification: Identification | None = None
    ledger_entry: int | None = None


@dataclass(frozen=True)
class SearchUsersByImageResult:
    user_matches: list[UserMatch]
    face_model_version: str
    searched_face: SearchedFaceDetails
    unsearched_faces: list[UnsearchedFace] = field(default_factory=list)
    identification: Identification | None = None
    ledger_entry: int | None = None
    probe_quality: dict | None = None  # for the ledger and its reviewer: how good the searched face was


# --- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BoundModel:
    """One model as the service runs it: its engine (sharing the default engine's detectors) and
    its scoring (its own calibration, or none: then no rates, and no identification)."""

    engine: FaceEngine
    scoring: Scoring

    @property
    def id(self) -> str:
        return str(self.engine.model)

    @property
    def calibrated(self) -> bool:
        return self.scoring.calibration is not None

    def similarity(self, score: float) -> float:
        """The 0-100 Similarity of a score: a function of its false match rate when calibrated."""
        return self.scoring.similarity(score) if self.calibrated else self.engine.to_similarity(score)

    def false_match_rate(self, score: float) -> float | None:
        return self.scoring.fmr(score)


class FaceService:
    def __init__(self, engine: FaceEngine, store: FaceStore, *, normalisation: str = "none") -> None:
        self.engine = engine
        self.store = store  # every account's collections; operations see one account's (``collections``)
        self._views: dict[str, AccountStore] = {}
        self.normalisation = normalisation
        self._bound: dict[str, BoundModel] = {}
        default = self._bind(engine)
        self.scoring = default.scoring
        self.calibration = self.scoring.calibration  # None: similarity by the engine's interim map, no rates

    @property
    def collections(self) -> AccountStore:
        """The store as the calling account sees it (scope.current(): the gate's grant). Every
        operation reaches the store through it, never through ``store``."""
        account = scope.current().account
        if account not in self._views:
            self._views[account] = AccountStore(self.store, account)
        return self._views[account]

    def _bind(self, engine: FaceEngine) -> BoundModel:
        key = str(engine.model)
        if key not in self._bound:
            folder = engine.settings.models_dir / engine.model.name
            try:
                scoring = Scoring.of(key, self.normalisation, folder)
            except CalibrationMissingError:
                if self.normalisation == "none":
                    raise
                scoring = Scoring.of(key, "none", folder)  # a model with no fitted normaliser scores plain cosines
            self._bound[key] = BoundModel(engine, scoring)
        return self._bound[key]

    def bound(self, model: str | None = None) -> BoundModel:
        """The default model as the service runs it, or a registry model by name."""
        return self._bind(self.engine) if model is None else self.model_for(model)

    def model_for(self, model: str) -> BoundModel:
        """The bound model for a model id (``name@digest``) or name; refuses weights that changed
        since a collection was made with them."""
        engine = self.engine.with_model(model.partition("@")[0])
        if "@" in model and str(engine.model) != model:
            raise ModelMismatchError(
                f"{model} is not installed: the model named {engine.model.name} now has weights {engine.model.version}. "
                "Templates of different weights are never compared: reinstall those weights, or re-index the "
                "images into a new collection")
        return self._bind(engine)

    def similarity(self, score: float) -> float:
        """The default model's Similarity of a score."""
        return self._bind(self.engine).similarity(score)

    def false_match_rate(self, score: float) -> float | None:
        return self.scoring.fmr(score)

    def _search(self, m: BoundModel, collection_id: str, vector: np.ndarray, k: int) -> list[tuple[StoredFace, float]]:
        """The nearest faces with their scores, best first. Normalised scores rank differently
        from cosines: the scoring's candidates(k) cosine neighbours are re-scored and re-ranked."""
        hits = self.collections.search(collection_id, vector, m.scoring.candidates(k))
        if m.scoring.normaliser is None or not hits:
            return hits
        full = self.collections.get_faces(collection_id, [f.face_id for f, _ in hits], vectors=True)
        scores = m.scoring.scores(vector, np.stack([full[f.face_id].vector for f, _ in hits]))
        return [(hits[i][0], float(scores[i])) for i in np.argsort(-scores, kind="stable")]

    def _identification(self, m: BoundModel, collection_id: str, asked: float | None, default: float,
                        limits: Limits | None, max_fmr: float | None) -> Identification:
        """The threshold for this gallery: the similarity asked for, or the FMR target's (both:
        the stricter; neither: the default), raised so that gallery size x FMR stays under the
        policy's bound on false positive identification. An uncalibrated model is refused: its
        scores carry no false match rate, so no threshold can bound false candidates."""
        if not m.calibrated:
            raise UncalibratedModelError(
                f"model {m.id} has no calibration, so its scores carry no false match rate and a search cannot "
                f"bound its false candidates: identification is refused. Fit one with `faceledger calibration fit "
                f"--model {m.engine.model.name}` (detection and 1:1 comparison work without it)")
        n = self.collections.face_count(collection_id)
        if max_fmr is not None and not 0.0 < max_fmr <= 1.0:
            raise InvalidParameterError(f"a false match rate target is in (0, 1], not {max_fmr}")
        by_rate = None if max_fmr is None else similarity_of_fmr(max_fmr)
        requested = max(x for x in (asked, by_rate) if x is not None) if (asked, by_rate) != (None, None) else default
        threshold = requested
        if limits is not None and n:
            threshold = max(threshold, similarity_of_fmr(limits.max_fpir / n))
        fmr = fmr_of_similarity(threshold)
        return Identification(n, requested, threshold, fmr, n * fmr, limits.max_fpir if limits else None)

    @property
    def model(self) -> str:
        return str(self.engine.model)

    def _model_of(self, collection_id: str) -> BoundModel:
        """The model the collection was made with: its templates are only ever compared with its own."""
        model = self.collections.get_collection(collection_id, counts=False).model
        try:
            return self.model_for(model)
        except ModelNotFoundError:
            raise ModelMismatchError(
                f"collection {collection_id!r} holds templates of {model}, which is not installed here. Templates of "
                "different models are never compared: add that model (`faceledger models add`, same weights) to use "
                "the collection, or re-index its images into a new collection") from None

    # --- images without a collection --------------------------------------------------------------

    def detect_faces(self, image: ImageSource, *, attributes: Sequence[str] | None = None) -> DetectFacesResult:
        api_model.check("DetectFaces", Image={}, Attributes=list(attributes) if attributes is not None else None)
        _refuse_attributes(attributes)
        d = self.engine.detect(image)
        return DetectFacesResult([FaceDetail.of(f, attributes) for f in d.faces[:MAX_FACES_PER_IMAGE]], d.orientation.name)

    def compare(self, source_image: ImageSource, target_image: ImageSource, threshold: float, *,
                quality_filter: str = "NONE", model: str | None = None) -> CompareResult:
        """The source's largest face against every target face, with the faces themselves (what the
        CLI shows), under the same rules as CompareFaces: a target of many faces is a gallery, so
        the gate decides it as identification, the probe's floor applies and the bar rises with the
        number of faces. ``model``: a registry name (default: the engine's)."""
        m = self.bound(model)
        granted: list[Admission] = []

        def admit(source: Face, targets: list[Face]) -> None:
            """Before any template is made: a target of many faces is a gallery, so the source is an
            identification probe (the gate decides; under a policy, the probe's floor applies)."""
            granted.append(scope.current().comparisons.admit("CompareFaces", len(targets)))
            if granted[0].limits is not None:
                _refuse_below_floor(granted[0].limits, source.quality, "the source face")

        r = m.engine.compare(source_image, target_image, threshold, quality_filter=quality_filter,
                             similarity=m.similarity, score=m.scoring.score, before_comparing=admit)
        if granted and granted[0].limits is not None:  # the threshold rises with the number of faces, as with a gallery
            n = len(r.matches) + len(r.unmatched)
            bar = max(threshold, similarity_of_fmr(granted[0].limits.max_fpir / n))
            unmatched = sorted([*r.unmatched, *(x for x in r.matches if x.similarity < bar)], key=lambda x: -x.similarity)
            r = dataclasses.replace(r, matches=[x for x in r.matches if x.similarity >= bar], unmatched=unmatched)
        return r

    def compare_faces(
        self, source_image: ImageSource, target_image: ImageSource, *,
        similarity_threshold: float | None = None, quality_filter: str = "NONE",
    ) -> CompareFacesResult:
        api_model.check("CompareFaces", SourceImage={}, TargetImage={}, SimilarityThreshold=similarity_threshold,
                        QualityFilter=quality_filter)
        r = self.compare(source_image, target_image, _threshold(similarity_threshold, DEFAULT_FACE_MATCH_THRESHOLD),
                         quality_filter=quality_filter)
        return CompareFacesResult(
            ComparedSourceImageFace(r.source_face.bounding_box, r.source_face.confidence),
            [CompareFacesMatch(m.similarity, FaceDetail.of(m.face), self.false_match_rate(m.score)) for m in r.matches],
            [FaceDetail.of(m.face) for m in r.unmatched],
            r.source_orientation.name,
            r.target_orientation.name,
        )

    # --- collections -----------------------------------------------------------------------------

    def create_collection(self, collection_id: str, *, store_images: bool = False, model: str | None = None,
                          tags: dict | None = None) -> CreateCollectionResult:
        """``model``: a registry name (on the wire, the tag ``faceledger:model``); default: the
        engine's. The collection keeps it for life, as the cloud API binds a face model version.
        ``store_images``: keep each indexed image's bytes (off by default: templates only)."""
        model = model or (tags or {}).get(MODEL_TAG)
        api_model.check("CreateCollection", CollectionId=collection_id)
        engine = self.engine if model is None else self.model_for(model).engine
        info = self.collections.create_collection(collection_id, str(engine.model), store_images=store_images,
                                            ndim=engine.manifest.dimension)
        return CreateCollectionResult(200, info.arn, info.model)

    def describe_collection(self, collection_id: str) -> DescribeCollectionResult:
        api_model.check("DescribeCollection", CollectionId=collection_id)
        i = self.collections.get_collection(collection_id)
        return DescribeCollectionResult(i.face_count, i.model, i.arn, i.created, i.user_count)

    def list_collections(self, max_results: int | None = None, next_token: str | None = None) -> ListCollectionsResult:
        api_model.check("ListCollections", MaxResults=max_results, NextToken=next_token)
        after = _read_token(next_token, "ListCollections", "")
        items, cursor = self.collections.list_collections(after, max_results or DEFAULT_PAGE["ListCollections"])
        return ListCollectionsResult(
            [i.name for i in items], [i.model for i in items], _make_token(cursor, "ListCollections", "")
        )

    def delete_collection(self, collection_id: str) -> DeleteCollectionResult:
        api_model.check("DeleteCollection", CollectionId=collection_id)
        self.collections.delete_collection(collection_id)
        return DeleteCollectionResult(200)

    # --- faces -----------------------------------------------------------------------------------

    def index_faces(
        self,
        collection_id: str,
        image: ImageSource,
        *,
        external_image_id: str | None = None,
        max_faces: int | None = None,
        quality_filter: str = "AUTO",
        detection_attributes: Sequence[str] | None = None,
        prealigned: bool = False,
    ) -> IndexFacesResult:
        """Detect, filter and embed the image's faces, then store those that pass."""
        self.check_index(collection_id, external_image_id, max_faces, quality_filter, detection_attributes)
        m = self._model_of(collection_id)  # before the costly part
        prepared = prepare_index(m.engine, image, max_faces=max_faces, quality_filter=quality_filter, prealigned=prealigned)
        return self.commit_index(collection_id, prepared, external_image_id=external_image_id)

    def check_index(self, collection_id, external_image_id, max_faces, quality_filter, detection_attributes) -> None:
        """IndexFaces' parameter checks, for callers that prepare images elsewhere (bulk indexing)."""
        api_model.check(
            "IndexFaces", CollectionId=collection_id, Image={}, ExternalImageId=external_image_id,
            MaxFaces=max_faces, QualityFilter=quality_filter,
            DetectionAttributes=list(detection_attributes) if detection_attributes is not None else None,
        )
        _refuse_attributes(detection_attributes)

    def commit_index(self, collection_id: str, prepared: "PreparedImage", *, external_image_id: str | None = None) -> IndexFacesResult:
        """Store what ``prepare_index`` computed (possibly in another process): one transaction."""
        api_model.check("IndexFaces", CollectionId=collection_id, Image={}, ExternalImageId=external_image_id)
        result = self.commit_index_many(collection_id, [(prepared, external_image_id)])[0]
        if isinstance(result, FaceledgerError):
            raise result
        return result

    def commit_index_many(self, collection_id: str, items: Sequence[tuple["PreparedImage", str | None]]
                          ) -> list["IndexFacesResult | FaceledgerError"]:
        """Store several prepared images (with their ExternalImageIds) in one store transaction:
        bulk indexing's one commit for many images. Per image: its result, or the error that kept
        it out, found before anything is written (a failing write fails them all, raised)."""
        api_model.check("IndexFaces", CollectionId=collection_id, Image={})
        model = self._model_of(collection_id).id
        store_images = self.collections.get_collection(collection_id, counts=False).store_images
        results: list = [None] * len(items)
        batch, where = [], []
        for i, (prepared, external_image_id) in enumerate(items):
            try:
                api_model.check("IndexFaces", CollectionId=collection_id, Image={}, ExternalImageId=external_image_id)
                if prepared.model != model:
                    raise InvalidParameterError(f"templates were made by {prepared.model}; collection {collection_id!r} "
                                                f"holds {model}")
            except FaceledgerError as exc:
                results[i] = exc
                continue
            batch.append(([NewFace(v, _box(d.bounding_box), d.confidence, external_image_id, q)
                           for d, v, q in zip(prepared.indexed, prepared.vectors,
                                              prepared.qualities or [None] * len(prepared.indexed))],
                          prepared.raw if store_images and prepared.indexed else None, prepared.sha256 or None))
            where.append(i)
        for i, stored in zip(where, self.collections.add_images(collection_id, batch) if batch else []):
            prepared = items[i][0]
            records = [FaceRecord(FaceRef.of(s, model), d) for s, d in zip(stored, prepared.indexed)]
            results[i] = IndexFacesResult(records, prepared.orientation, model, prepared.unindexed)
        return results

    def list_faces(
        self,
        collection_id: str,
        *,
        max_results: int | None = None,
        next_token: str | None = None,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
    ) -> ListFacesResult:
        api_model.check("ListFaces", CollectionId=collection_id, MaxResults=max_results, NextToken=next_token,
                        UserId=user_id, FaceIds=list(face_ids) if face_ids is not None else None)
        model = self.collections.get_collection(collection_id, counts=False).model
        scope = f"{collection_id}/{user_id or ''}/{','.join(face_ids or [])}"
        after = _read_token(next_token, "ListFaces", scope)
        faces, cursor = self.collections.list_faces(
            collection_id, after, max_results or DEFAULT_PAGE["ListFaces"], user_id=user_id,
            face_ids=list(face_ids) if face_ids is not None else None,
        )
        return ListFacesResult([FaceRef.of(f, model) for f in faces], _make_token(cursor, "ListFaces", scope), model)

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> DeleteFacesResult:
        api_model.check("DeleteFaces", CollectionId=collection_id, FaceIds=list(face_ids))
        found = self.collections.get_faces(collection_id, face_ids)
        failed, deletable = [], []
        for face_id in dict.fromkeys(face_ids):
            f = found.get(face_id)
            if f is None:
                failed.append(UnsuccessfulFaceDeletion(face_id, None, ["FACE_NOT_FOUND"]))
            elif f.user_id is not None:
                failed.append(UnsuccessfulFaceDeletion(face_id, f.user_id, ["ASSOCIATED_TO_AN_EXISTING_USER"]))
            else:
                deletable.append(face_id)
        deleted = self.collections.delete_faces(collection_id, deletable) if deletable else []
        return DeleteFacesResult(deleted, failed)

    def _matches(self, m: BoundModel, collection_id: str, vector: np.ndarray, max_faces: int, ident: Identification,
                 exclude: str | None = None) -> list[FaceMatch]:
        hits = self._search(m, collection_id, vector, max_faces + (1 if exclude else 0))
        out = []
        for f, score in hits:
            sim = m.similarity(score)
            if f.face_id != exclude and sim >= ident.effective_threshold:
                fmr = m.false_match_rate(score)
                out.append(FaceMatch(sim, FaceRef.of(f, m.id), fmr, None if fmr is None else fmr * ident.gallery_size))
        return out[:max_faces]

    def search_faces(
        self, collection_id: str, face_id: str, *, max_faces: int | None = None, face_match_threshold: float | None = None,
        max_false_match_rate: float | None = None, limits: Limits | None = None,
    ) -> SearchFacesResult:
        api_model.check("SearchFaces", CollectionId=collection_id, FaceId=face_id, MaxFaces=max_faces,
                        FaceMatchThreshold=face_match_threshold)
        m = self._model_of(collection_id)
        probe = self.collections.get_faces(collection_id, [face_id], vectors=True).get(face_id)
        if probe is None:
            raise ResourceNotFoundError(f"face {face_id} is not in collection {collection_id!r}")
        _stored_above_floor(limits, [probe])
        ident = self._identification(m, collection_id, face_match_threshold, DEFAULT_FACE_MATCH_THRESHOLD,
                                     limits, max_false_match_rate)
        matches = self._matches(m, collection_id, probe.vector, max_faces or DEFAULT_MAX_FACES, ident, exclude=face_id)
        return SearchFacesResult(face_id, matches, m.id, ident)

    def _probe(self, m: BoundModel, image: ImageSource, quality_filter: str,
               limits: Limits | None = None) -> tuple[Face, np.ndarray, list[Face]]:
        """The largest face passing the filter, its template, and the other faces. Under a
        policy, a probe below its quality floor is refused, not searched."""
        faces = m.engine.detect(image).faces
        if not faces:
            raise NoFaceError("no face was found in the image; use a clearer, frontal photo")
        passing = [f for f in faces if not quality.reasons(f.quality, quality_filter)]
        if not passing:
            why = ", ".join(quality.reasons(faces[0].quality, quality_filter))
            raise NoFaceError(f"no face in the image passes the {quality_filter} quality filter ({why})")
        probe = passing[0]
        if limits is not None:
            _refuse_below_floor(limits, probe.quality, "the probe")
        (embedded,) = m.engine.embed_faces([probe])
        return probe, embedded.template.vector, [f for f in faces if f is not probe]

    def search_faces_by_image(
        self, collection_id: str, image: ImageSource, *, max_faces: int | None = None,
        face_match_threshold: float | None = None, quality_filter: str = "NONE", max_false_match_rate: float | None = None,
        limits: Limits | None = None,
    ) -> SearchFacesByImageResult:
        api_model.check("SearchFacesByImage", CollectionId=collection_id, Image={}, MaxFaces=max_faces,
                        FaceMatchThreshold=face_match_threshold, QualityFilter=quality_filter)
        m = self._model_of(collection_id)
        ident = self._identification(m, collection_id, face_match_threshold, DEFAULT_FACE_MATCH_THRESHOLD,
                                     limits, max_false_match_rate)
        probe, vector, _ = self._probe(m, image, quality_filter, limits)
        matches = self._matches(m, collection_id, vector, max_faces or DEFAULT_MAX_FACES, ident)
        return SearchFacesByImageResult(probe.bounding_box, probe.confidence, matches, m.id, ident,
                                        probe_quality=probe_quality(probe.quality))

    # --- users -----------------------------------------------------------------------------------

    def create_user(self, collection_id: str, user_id: str) -> None:
        api_model.check("CreateUser", CollectionId=collection_id, UserId=user_id)
        self.collections.create_user(collection_id, user_id)

    def delete_user(self, collection_id: str, user_id: str) -> None:
        api_model.check("DeleteUser", CollectionId=collection_id, UserId=user_id)
        self.collections.delete_user(collection_id, user_id)

    def list_users(self, collection_id: str, *, max_results: int | None = None, next_token: str | None = None) -> ListUsersResult:
        api_model.check("ListUsers", CollectionId=collection_id, MaxResults=max_results, NextToken=next_token)
        after = _read_token(next_token, "ListUsers", collection_id)
        items, cursor = self.collections.list_users(collection_id, after, max_results or DEFAULT_PAGE["ListUsers"])
        return ListUsersResult([User(u.user_id, u.status) for u in items], _make_token(cursor, "ListUsers", collection_id))

    def associate_faces(
        self, collection_id: str, user_id: str, face_ids: Sequence[str], *, user_match_threshold: float | None = None
    ) -> AssociateFacesResult:
        """Attach faces to a user. A face must match the user's existing faces at the threshold."""
        api_model.check("AssociateFaces", CollectionId=collection_id, UserId=user_id, FaceIds=list(face_ids),
                        UserMatchThreshold=user_match_threshold)
        threshold = _threshold(user_match_threshold, DEFAULT_ASSOCIATE_THRESHOLD)
        user = self.collections.get_user(collection_id, user_id)
        found = self.collections.get_faces(collection_id, face_ids, vectors=True)
        existing = self.collections.list_faces(collection_id, None, MAX_FACES_PER_USER, user_id=user_id)[0]
        reference = list(self.collections.get_faces(collection_id, [f.face_id for f in existing], vectors=True).values())
        m = self._model_of(collection_id)
        # Each candidate is compared with the user's faces: as many comparisons as candidates of
        # possibly as many people. Past the policy's bound that is identification (the gate decides);
        # under it, a caller who may not identify learns pass or fail, never the similarity.
        compared = [f for f in found.values() if f.user_id is None] if reference else []
        admission = scope.current().comparisons.admit("AssociateFaces", len(compared))
        if admission.limits is not None:
            reference = _stored_above_floor(admission.limits, reference)
        ref_vectors = [f.vector for f in reference]
        ok, failed = [], []
        for face_id in dict.fromkeys(face_ids):
            f = found.get(face_id)
            if f is None:
                failed.append(UnsuccessfulFaceAssociation(face_id, None, None, ["FACE_NOT_FOUND"]))
                continue
            if f.user_id == user_id:
                ok.append(face_id)
                continue
            if f.user_id is not None:
                failed.append(UnsuccessfulFaceAssociation(face_id, f.user_id, None, ["ASSOCIATED_TO_A_DIFFERENT_USER"]))
                continue
            if ref_vectors:
                sim = m.similarity(float(m.scoring.scores(f.vector, np.stack(ref_vectors)).max()))
                if sim < threshold:
                    shown = sim if admission.disclose_scores else None
                    failed.append(UnsuccessfulFaceAssociation(face_id, user_id, shown, ["LOW_MATCH_CONFIDENCE"]))
                    continue
            ok.append(face_id)
        new = [fid for fid in ok if found[fid].user_id != user_id]
        if user.face_count + len(new) > MAX_FACES_PER_USER:
            raise ServiceQuotaExceededError(
                f"user {user_id!r} would have {user.face_count + len(new)} faces; the limit is {MAX_FACES_PER_USER}"
            )
        if new:
            self.collections.set_user(collection_id, new, user_id)
        status = self.collections.get_user(collection_id, user_id).status
        return AssociateFacesResult([AssociatedFace(f) for f in ok], failed, status)

    def disassociate_faces(self, collection_id: str, user_id: str, face_ids: Sequence[str]) -> DisassociateFacesResult:
        api_model.check("DisassociateFaces", CollectionId=collection_id, UserId=user_id, FaceIds=list(face_ids))
        self.collections.get_user(collection_id, user_id)
        found = self.collections.get_faces(collection_id, face_ids)
        ok, failed = [], []
        for face_id in dict.fromkeys(face_ids):
            f = found.get(face_id)
            if f is None:
                failed.append(UnsuccessfulFaceDisassociation(face_id, None, ["FACE_NOT_FOUND"]))
            elif f.user_id != user_id:
                failed.append(UnsuccessfulFaceDisassociation(face_id, f.user_id, ["ASSOCIATED_TO_A_DIFFERENT_USER"]))
            else:
                ok.append(face_id)
        if ok:
            self.collections.set_user(collection_id, ok, None)
        status = self.collections.get_user(collection_id, user_id).status
        return DisassociateFacesResult([DisassociatedFace(f) for f in ok], failed, status)

    def _user_matches(self, m: BoundModel, collection_id: str, vector: np.ndarray, max_users: int,
                      ident: Identification, exclude_user: str | None = None) -> list[UserMatch]:
        """Users ranked by their best-matching face. Faces not associated with a user are skipped."""
        threshold = ident.effective_threshold
        best: dict[str, float] = {}  # user -> best score
        k = 256
        while True:
            hits = self._search(m, collection_id, vector, k)
            for f, score in hits:
                if f.user_id and f.user_id != exclude_user:
                    best[f.user_id] = max(best.get(f.user_id, -np.inf), score)
            # stop once enough users are found or the scores fall under the threshold
            if len(hits) < k or len(best) >= max_users or (hits and m.similarity(hits[-1][1]) < threshold):
                break
            k *= 4
        ranked = sorted(((c, u) for u, c in best.items() if m.similarity(c) >= threshold), reverse=True)[:max_users]
        statuses = {u: self.collections.get_user(collection_id, u).status for _, u in ranked}
        out = []
        for c, u in ranked:
            fmr = m.false_match_rate(c)
            out.append(UserMatch(m.similarity(c), MatchedUser(u, statuses[u]), fmr,
                                 None if fmr is None else fmr * ident.gallery_size))
        return out

    def search_users(
        self, collection_id: str, *, user_id: str | None = None, face_id: str | None = None,
        user_match_threshold: float | None = None, max_users: int | None = None, max_false_match_rate: float | None = None,
        limits: Limits | None = None,
    ) -> SearchUsersResult:
        """By a stored face, or by a user (the normalised mean of the user's templates)."""
        api_model.check("SearchUsers", CollectionId=collection_id, UserId=user_id, FaceId=face_id,
                        UserMatchThreshold=user_match_threshold, MaxUsers=max_users)
        if (user_id is None) == (face_id is None):
            raise InvalidParameterError("SearchUsers needs exactly one of UserId and FaceId")
        m = self._model_of(collection_id)
        model = m.id
        ident = self._identification(m, collection_id, user_match_threshold, DEFAULT_USER_MATCH_THRESHOLD,
                                     limits, max_false_match_rate)
        if face_id is not None:
            probe = self.collections.get_faces(collection_id, [face_id], vectors=True).get(face_id)
            if probe is None:
                raise ResourceNotFoundError(f"face {face_id} is not in collection {collection_id!r}")
            _stored_above_floor(limits, [probe])
            matches = self._user_matches(m, collection_id, probe.vector, max_users or DEFAULT_MAX_USERS, ident)
            return SearchUsersResult(matches, model, searched_face=SearchedFace(face_id), identification=ident)
        self.collections.get_user(collection_id, user_id)
        faces = self.collections.list_faces(collection_id, None, MAX_FACES_PER_USER, user_id=user_id)[0]
        if not faces:
            raise InvalidParameterError(f"user {user_id!r} has no faces to search with; associate faces first")
        vectors = self.collections.get_faces(collection_id, [f.face_id for f in faces], vectors=True)
        probes = _stored_above_floor(limits, list(vectors.values()))  # only the user's faces that clear the floor
        mean = normalise(np.mean([f.vector for f in probes], axis=0))
        matches = self._user_matches(m, collection_id, mean, max_users or DEFAULT_MAX_USERS, ident, exclude_user=user_id)
        return SearchUsersResult(matches, model, searched_user=SearchedUser(user_id), identification=ident)

    def search_users_by_image(
        self, collection_id: str, image: ImageSource, *, user_match_threshold: float | None = None,
        max_users: int | None = None, quality_filter: str = "NONE", max_false_match_rate: float | None = None,
        limits: Limits | None = None,
    ) -> SearchUsersByImageResult:
        api_model.check("SearchUsersByImage", CollectionId=collection_id, Image={},
                        UserMatchThreshold=user_match_threshold, MaxUsers=max_users, QualityFilter=quality_filter)
        m = self._model_of(collection_id)
        model = m.id
        ident = self._identification(m, collection_id, user_match_threshold, DEFAULT_USER_MATCH_THRESHOLD,
                                     limits, max_false_match_rate)
        probe, vector, others = self._probe(m, image, quality_filter, limits)
        matches = self._user_matches(m, collection_id, vector, max_users or DEFAULT_MAX_USERS, ident)
        unsearched = [
            UnsearchedFace(FaceDetail.of(f), ["FACE_NOT_LARGEST"] + quality.reasons(f.quality, quality_filter))
            for f in others
        ]
        return SearchUsersByImageResult(matches, model, SearchedFaceDetails(FaceDetail.of(probe)), unsearched, ident,
                                        probe_quality=probe_quality(probe.quality))


# --- indexing in two steps: compute (anywhere), then store (one writer) ----------------------------


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """An image's faces, split into those to index (with templates) and those filtered out."""

    model: str
    orientation: str
    indexed: list[FaceDetail]
    vectors: np.ndarray
    unindexed: list[UnindexedFace]
    raw: bytes | None = field(default=None, repr=False)
    sha256: str = ""  # of the image's bytes, for the ledger (the bytes themselves stay out of it)
    qualities: tuple[dict, ...] = ()  # of each indexed face, kept in the store (a stored face's floor)


def prepare_index(
    engine: FaceEngine, image: ImageSource, *, max_faces: int | None = None, quality_filter: str = "AUTO",
    prealigned: bool = False, keep_bytes: bool = True,
) -> PreparedImage:
    """Decode, detect (largest first, at most 100), apply the filter and MaxFaces, embed."""
    selected = _select_for_index(engine, image, max_faces, quality_filter, prealigned)
    return _prepared(engine, *selected, engine.embed_faces(selected[1]), keep_bytes)


def prepare_index_many(
    engine: FaceEngine, images: Sequence[ImageSource], *, max_faces: int | None = None, quality_filter: str = "AUTO",
    keep_bytes: bool = True,
) -> list["PreparedImage | FaceledgerError | OSError"]:
    """``prepare_index`` for several images, their faces embedded in one call (per face, a batch
    of a few images' faces costs less than one face at a time): the same templates. An image that
    cannot be read or decoded gives its error in its place; the others are prepared."""
    try:
        QualityFilter.parse(quality_filter)
    except FaceledgerError as exc:  # every image's error, as when each is prepared alone
        return [exc for _ in images]
    sources: list = []
    for image in images:
        try:  # a path: size-checked, read once (its bytes are hashed for the ledger)
            sources.append(imaging.read_source(image, max_bytes=engine.settings.max_image_bytes))
        except (FaceledgerError, OSError) as exc:
            sources.append(exc)
    readable = [s for s in sources if not isinstance(s, Exception)]
    detected = iter(engine.detect_many(readable))  # every step over all the images at once: less CPU an image
    selected: list = []
    for source in sources:
        detection = source if isinstance(source, Exception) else next(detected)
        selected.append(detection if isinstance(detection, Exception) else
                        (source, *_select(detection, max_faces, quality_filter)))
    faces = [f for s in selected if not isinstance(s, Exception) for f in s[1]]
    embedded = iter(engine.embed_faces(faces))
    return [s if isinstance(s, Exception) else _prepared(engine, *s, [next(embedded) for _ in s[1]], keep_bytes)
            for s in selected]


def _select_for_index(engine: FaceEngine, image: ImageSource, max_faces: int | None, quality_filter: str,
                      prealigned: bool) -> tuple:
    """(image, faces to index, UnindexedFaces, orientation): detection, the filter and MaxFaces."""
    quality_filter = QualityFilter.parse(quality_filter).value
    image = imaging.read_source(image, max_bytes=engine.settings.max_image_bytes)  # a path: size-checked, read once
    detection = engine.detect(image, prealigned=prealigned)  # decodes under the engine's decode budget
    return (image, *_select(detection, max_faces, quality_filter))


def _select(detection: Detection, max_faces: int | None, quality_filter: str) -> tuple:
    """(faces to index, UnindexedFaces, orientation) of a detection: the filter and MaxFaces."""
    quality_filter = QualityFilter.parse(quality_filter).value
    faces = detection.faces[:MAX_FACES_PER_IMAGE]
    keep, unindexed = [], []
    for f in faces:
        why = quality.reasons(f.quality, quality_filter)
        if why:
            unindexed.append(UnindexedFace(why, FaceDetail.of(f)))
        elif max_faces is not None and len(keep) >= max_faces:
            unindexed.append(UnindexedFace(["EXCEEDS_MAX_FACES"], FaceDetail.of(f)))
        else:
            keep.append(f)
    return keep, unindexed, detection.orientation.name


def _prepared(engine: FaceEngine, image, keep: list, unindexed: list, orientation: str, embedded: list,
              keep_bytes: bool) -> PreparedImage:
    vectors = np.array([e.template.vector for e in embedded], dtype=np.float32).reshape(len(embedded), -1) if embedded \
        else np.zeros((0, 0), np.float32)
    raw = _raw_bytes(image)
    digest = hashlib.sha256(raw).hexdigest() if raw is not None else ""
    return PreparedImage(str(engine.model), orientation, [FaceDetail.of(f) for f in keep], vectors, unindexed,
                         raw if keep_bytes and keep else None, digest, tuple(quality_record(f.quality) for f in keep))


# --- helpers ---------------------------------------------------------------------------------------


def quality_record(q: quality.Quality) -> dict:
    """A face's quality as the store keeps it."""
    return dataclasses.asdict(q)


def probe_quality(q: quality.Quality) -> dict:
    """A probe's quality as the ledger keeps it (rounded to a hundredth)."""
    r = quality_record(q)
    return {k: ({a: round(b, 2) for a, b in v.items()} if isinstance(v, dict) else round(float(v), 2)) for k, v in r.items()}


def quality_of(record: dict) -> quality.Quality:
    return quality.Quality(**{**record, "pose": quality.Pose(**record["pose"])})


def _refuse_below_floor(limits: Limits, q: quality.Quality, what: str) -> None:
    why = limits.quality_floor.failures(q)
    if why:
        raise ProbeQualityError(f"{what} is below the policy's quality floor ({'; '.join(why)}): it was not compared. "
                                "Use a sharper, better lit, more frontal and larger face image")


def _stored_above_floor(limits: Limits | None, faces: list[StoredFace]) -> list[StoredFace]:
    """The stored faces that clear the floor, by the quality measured when each was indexed (so
    IndexFaces with QualityFilter NONE and a search by FaceId cannot launder a poor probe).
    Refuses when none does; a face indexed before quality was kept clears no floor."""
    if limits is None:
        return faces
    passing, why = [], []
    for f in faces:
        if f.quality is None:
            why.append(f"face {f.face_id} was indexed before faceledger kept face quality, so its quality is unknown")
            continue
        failures = limits.quality_floor.failures(quality_of(f.quality))
        if failures:
            why.append(f"face {f.face_id}: {'; '.join(failures)}")
        else:
            passing.append(f)
    if not passing:
        raise ProbeQualityError(f"no stored face clears the policy's quality floor ({'; '.join(why)}): nothing was "
                                "searched. Search by a better image (SearchFacesByImage), or index one and search by its face")
    return passing


def _threshold(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def _box(b: BoundingBox) -> tuple[float, float, float, float]:
    return (b.left, b.top, b.width, b.height)


def _refuse_attributes(attributes: Sequence[str] | None) -> None:
    refused = sorted(set(attributes or ()) & REFUSED_ATTRIBUTES)
    if refused:
        raise InvalidParameterError(
            f"faceledger does not infer {', '.join(refused)}: it never estimates sex, age, emotion or "
            "appearance from a face. Ask for DEFAULT (or ALL, which returns the same attributes)"
        )


def _raw_bytes(image: ImageSource) -> bytes | None:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, str) or hasattr(image, "__fspath__"):
        return Path(image).read_bytes()
    return None


def _scope_digest(operation: str, scope: str) -> str:
    return hashlib.sha256(f"{operation}\n{scope}".encode()).hexdigest()[:16]


def _make_token(cursor: str | None, operation: str, scope: str) -> str | None:
    """An opaque NextToken bound to the listing it came from (operation and its filters)."""
    if cursor is None:
        return None
    raw = json.dumps({"s": _scope_digest(operation, scope), "c": cursor}, separators=(",", ":")).encode()
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    if len(token) > 255:  # the model's limit; scopes are short, so this is a bug, not an input error
        raise RuntimeError("pagination token too long")
    return token


def _read_token(token: str | None, operation: str, scope: str) -> str | None:
    if token is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["s"] != _scope_digest(operation, scope):
            raise ValueError
        return str(data["c"])
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise InvalidPaginationTokenError(
            f"NextToken was not issued by {operation} for this request; start again without it"
        ) from None



