"""The segment store: one small async interface, and its embedded backend, a directory on the node
bounded in size and with retention. The shared backend (S3-compatible object storage) is in s3.py.

Keys are `<stream id>/<rendition>/<name>.ts` (policy.object_key), written once and never changed:
a segment's copy is immutable, so a store needs neither locking nor versioning.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Usage:
    objects: int
    bytes: int


class SegmentStore(Protocol):
    public_base: str  # URL prefix under which players fetch objects directly; "": via the edge

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, None if there is no such object."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`; how many were deleted."""
        ...

    async def usage(self) -> Usage: ...

    async def sweep(self, now: float) -> int:
        """Apply retention and the size bound; how many objects were deleted."""
        ...

    def describe(self) -> str: ...


class DirectoryStore:
    """Objects as files under `root`. Written to a temporary name and renamed, so a reader sees a
    whole segment or none. Past `max_bytes` the oldest files go first (a safety bound: size it for
    the longest DVR window and recordings you keep); files older than `retention` seconds go too."""

    def __init__(self, root: Path, max_bytes: int, retention: float, public_base: str = "") -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.retention = retention
        self.public_base = public_base
        self._bytes = 0
        self._objects = 0
        self._lock = asyncio.Lock()  # sweeps one at a time

    async def open(self) -> None:
        def scan() -> tuple[int, int]:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            count = size = 0
            for path in self.root.rglob("*.ts"):
                count += 1
                size += path.stat().st_size
            return count, size

        self._objects, self._bytes = await asyncio.to_thread(scan)

    async def close(self) -> None:
        pass

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"not an object key: {key!r}")
        return self.root / key

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)

        def write() -> int:
            path.parent.mkdir(parents=True, exist_ok=True)
            old = path.stat().st_size if path.exists() else None
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data)}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
            return -1 if old is None else old

        old = await asyncio.to_thread(write)
        if old < 0:
            self._objects += 1
            self._bytes += len(data)
        else:
            self._bytes += len(data) - old
        if self._bytes > self.max_bytes:
            await self.sweep(time.time())

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError("a prefix here is whole path segments: it ends with '/'")
        base = self._path(prefix.rstrip("/"))

        def delete() -> tuple[int, int]:
            count = size = 0
            for path in list(base.rglob("*.ts")) if base.is_dir() else []:
                try:
                    size += path.stat().st_size
                    path.unlink()
                    count += 1
                except FileNotFoundError:
                    pass
            return count, size

        count, size = await asyncio.to_thread(delete)
        self._objects -= count
        self._bytes -= size
        return count

    async def usage(self) -> Usage:
        return Usage(self._objects, max(0, self._bytes))

    async def sweep(self, now: float) -> int:
        async with self._lock:
            def sweep() -> tuple[int, int, int, int]:
                files = []
                for path in self.root.rglob("*.ts"):
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        continue
                    files.append((st.st_mtime, st.st_size, path))
                files.sort()
                total = sum(f[1] for f in files)
                target = int(self.max_bytes * 0.9)  # below the bound, so that a sweep is not due at once again
                count = freed = 0
                for mtime, size, path in files:
                    if now - mtime < self.retention and total - freed <= target:
                        break
                    try:
                        path.unlink()
                    except FileNotFoundError:
                        continue
                    count += 1
                    freed += size
                return count, freed, len(files), total

            count, freed, objects, total = await asyncio.to_thread(sweep)
            # Recounted from the directory, not from this process's writes: the worker processes
            # of one node (`edge serve --workers`) share it, and each writes only some of it.
            self._objects = objects - count
            self._bytes = total - freed
            return count

    def describe(self) -> str:
        return f"directory {self.root}"
