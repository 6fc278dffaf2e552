"""Collections, faces, users and templates: an interface and its embedded default."""

from .base import CollectionInfo, FaceStore, NewFace, StoredFace, UserInfo
from .sqlite import SQLiteStore

__all__ = ["CollectionInfo", "FaceStore", "NewFace", "SQLiteStore", "StoredFace", "UserInfo"]
