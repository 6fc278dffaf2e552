"""Accounts (tenants): each owns its collections, as an AWS account does.

The store holds every account's collections; an ``AccountStore`` is one account's view of it.
A collection's name in the store is ``ACCOUNT:NAME`` (a CollectionId can never hold ``:``), and
plain ``NAME`` in the default local account, so stores made before accounts keep working. Through
the view an account lists, describes, changes, searches and deletes only its own collections:
another account's collection does not exist for it (the same ResourceNotFound as a missing one,
so its existence does not leak either). ARNs carry the account.
"""

from __future__ import annotations

import dataclasses
import functools

from faceledger.errors import FaceledgerError
from faceledger.service.scope import DEFAULT_ACCOUNT
from faceledger.store.base import CollectionInfo

#: Store methods whose first argument is a collection's name.
_BY_NAME = frozenset({
    "get_collection", "delete_collection", "add_faces", "add_images", "get_faces", "list_faces", "delete_faces", "search",
    "face_count", "stored_image", "indexed_image", "create_user", "get_user", "list_users", "delete_user", "set_user", "verify",
})


class AccountStore:
    def __init__(self, store, account: str = DEFAULT_ACCOUNT) -> None:
        self.inner = store
        self.account = account
        self._prefix = "" if account == DEFAULT_ACCOUNT else f"{account}:"

    def qualified(self, name: str) -> str:
        """The collection's name in the store."""
        return self._prefix + name

    def _own(self, stored_name: str) -> str | None:
        """The plain name of a stored collection this account owns; None for another's."""
        if not self._prefix:
            return None if ":" in stored_name else stored_name
        return stored_name[len(self._prefix):] if stored_name.startswith(self._prefix) else None

    def _info(self, info: CollectionInfo) -> CollectionInfo:
        name = self._own(info.name)
        base, sep, _ = info.arn.rpartition(":collection/")
        arn = f"{base.rpartition(':')[0]}:{self.account}{sep}{name}" if sep else info.arn
        return dataclasses.replace(info, name=name, arn=arn)

    def _plain(self, exc: FaceledgerError, name: str) -> FaceledgerError:
        """The same error, naming the collection as its account knows it."""
        if self._prefix:
            exc.message = exc.message.replace(repr(self.qualified(name)), repr(name))
            exc.args = (exc.message,)
        return exc

    def create_collection(self, name: str, model: str, **kwargs) -> CollectionInfo:
        try:
            return self._info(self.inner.create_collection(self.qualified(name), model, **kwargs))
        except FaceledgerError as exc:
            raise self._plain(exc, name) from None

    def get_collection(self, name: str, **kwargs) -> CollectionInfo:
        return self._info(self._named("get_collection")(name, **kwargs))

    def list_collections(self, after: str | None, limit: int) -> tuple[list[CollectionInfo], str | None]:
        """This account's collections by name. The store lists all accounts in name order: an
        account's are contiguous after ``ACCOUNT:``; the default account's are those with no ``:``."""
        cursor = self.qualified(after) if after is not None else (self._prefix or None)
        mine: list[CollectionInfo] = []
        while len(mine) <= limit:
            page, cursor = self.inner.list_collections(cursor, max(limit, 100))
            for info in page:
                if self._own(info.name) is not None:
                    mine.append(self._info(info))
                elif self._prefix and info.name > self._prefix:
                    cursor = None  # past this account's names
                    break
            if cursor is None:
                break
        items = mine[:limit]
        return items, (items[-1].name if len(mine) > limit else None)

    def _named(self, method: str):
        call = getattr(self.inner, method)

        @functools.wraps(call)
        def scoped(name: str, *args, **kwargs):
            try:
                return call(self.qualified(name), *args, **kwargs)
            except FaceledgerError as exc:
                raise self._plain(exc, name) from None

        return scoped

    def __getattr__(self, method: str):
        if method in _BY_NAME:
            return self._named(method)
        return getattr(self.inner, method)  # close() and the store's own maintenance
