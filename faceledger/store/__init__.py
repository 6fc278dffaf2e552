"""Collections, faces, users and templates: an interface and its embedded default."""

from faceledger.store.base import CollectionInfo, FaceStore, NewFace, StoredFace, UserInfo
from faceledger.store.sqlite import SQLiteStore

__all__ = ["CollectionInfo", "FaceStore", "NewFace", "SQLiteStore", "StoredFace", "UserInfo"]
