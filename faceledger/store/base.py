"""The store interface. Callers (the service layer) see only this, so a scale-out backend on a
distributed vector engine can replace the embedded one without changing them.

Listings return (items, cursor): the cursor is an opaque string to pass as ``after`` for the next
page, None after the last. Semantics every backend keeps: a write is durable when the call returns; a search issued after a
write returns (from any process) sees it; a deleted face is gone from every search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    arn: str
    model: str  # the ModelId string of every template in it
    created: float  # unix time
    face_count: int | None  # None when not counted (counting scans the collection)
    user_count: int | None
    store_images: bool


@dataclass(frozen=True)
class NewFace:
    """A face to store: its template and the metadata the cloud API returns about it."""

    vector: np.ndarray
    box: tuple[float, float, float, float]  # left, top, width, height as ratios
    confidence: float
    external_image_id: str | None = None
    quality: dict | None = None  # the face's measured quality (vision.quality), kept so a stored face can be floored


@dataclass(frozen=True, eq=False)
class StoredFace:
    face_id: str
    image_id: str
    external_image_id: str | None
    box: tuple[float, float, float, float]
    confidence: float
    user_id: str | None
    created: float
    vector: np.ndarray | None = field(default=None, repr=False)
    quality: dict | None = None  # None: indexed before faceledger kept face quality


@dataclass(frozen=True)
class UserInfo:
    user_id: str
    status: str  # CREATED (no faces yet) or ACTIVE
    face_count: int


class FaceStore(Protocol):
    def create_collection(self, name: str, model: str, *, store_images: bool = False) -> CollectionInfo: ...
    def get_collection(self, name: str, *, counts: bool = True) -> CollectionInfo: ...
    def list_collections(self, after: str | None, limit: int) -> tuple[list[CollectionInfo], str | None]: ...
    def delete_collection(self, name: str) -> None: ...

    def add_faces(self, name: str, faces: Sequence[NewFace], image: bytes | None = None,
                  image_sha256: str | None = None) -> list[StoredFace]: ...
    def add_images(self, name: str, images: Sequence[tuple[Sequence[NewFace], bytes | None, str | None]]
                   ) -> list[list[StoredFace]]: ...  # add_faces for several images (SQLite: one transaction)
    def indexed_image(self, name: str, image_sha256: str, external_image_id: str | None) -> bool:
        """Whether faces of this image (by digest) were stored under this ExternalImageId: what makes
        a resumed bulk index idempotent."""
        ...
    def get_faces(self, name: str, face_ids: Sequence[str], *, vectors: bool = False) -> dict[str, StoredFace]: ...
    def list_faces(
        self, name: str, after: str | None, limit: int, *, user_id: str | None = None, face_ids: Sequence[str] | None = None
    ) -> tuple[list[StoredFace], str | None]: ...
    def delete_faces(self, name: str, face_ids: Sequence[str]) -> list[str]: ...
    def search(self, name: str, vector: np.ndarray, k: int) -> list[tuple[StoredFace, float]]: ...
    def face_count(self, name: str) -> int: ...  # cheap: the gallery size every 1:N search reports
    def stored_image(self, name: str, image_id: str) -> bytes | None: ...

    def create_user(self, name: str, user_id: str) -> UserInfo: ...
    def get_user(self, name: str, user_id: str) -> UserInfo: ...
    def list_users(self, name: str, after: str | None, limit: int) -> tuple[list[UserInfo], str | None]: ...
    def delete_user(self, name: str, user_id: str) -> None: ...
    def set_user(self, name: str, face_ids: Sequence[str], user_id: str | None) -> None: ...

    def close(self) -> None: ...
