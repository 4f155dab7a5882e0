"""The shared segment store: S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Cloudflare R2,
GCS's XML API) through aiobotocore.

Why aiobotocore rather than aiohttp with a hand-written SigV4: botocore is the reference signer
(SigV4, payload hashing, the regions and checksum rules each provider adds), resolves credentials
from the usual places (environment, profiles, instance and container roles), and handles path-style
versus virtual-host addressing; aiobotocore runs it on aiohttp, which the edge already uses. It is
maintained by the aio-libs group in step with botocore. The price is the botocore package (~15 MB).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.segments.store import Usage

USAGE_CACHE_S = 60.0


class S3Store:
    """Objects in one bucket under a key prefix. URL: `s3://bucket/prefix?endpoint=http://host:9000
    &region=us-east-1`; credentials from the standard AWS sources (AWS_ACCESS_KEY_ID, ...).
    Retention is better left to a lifecycle rule on the bucket; `sweep` only reports."""

    def __init__(self, url: str, public_base: str = "", max_pool: int = 32) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("segment store: an S3 URL is s3://bucket[/prefix][?endpoint=...&region=...]")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        self.endpoint = query.get("endpoint") or None
        self.region = query.get("region", "us-east-1")
        self.public_base = public_base
        self.max_pool = max_pool
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._usage: tuple[float, Usage] | None = None

    async def open(self) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(
            max_pool_connections=self.max_pool,
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=3, read_timeout=10,
            s3={"addressing_style": "path"} if self.endpoint else None,
        )
        self._stack = contextlib.AsyncExitStack()
        self._client = await self._stack.enter_async_context(
            get_session().create_client("s3", region_name=self.region, endpoint_url=self.endpoint, config=config)
        )

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = None

    async def put(self, key: str, data: bytes) -> None:
        await self._client.put_object(
            Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType="video/mp2t",
            CacheControl="public, max-age=31536000, immutable",
        )

    async def get(self, key: str) -> bytes | None:
        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._client.exceptions.NoSuchKey:
            return None
        async with response["Body"] as body:
            return await body.read()

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as exc:  # botocore's ClientError: 404 means absent; anything else is a failure
            if _status(exc) == 404:
                return False
            raise
        return True

    async def delete_prefix(self, prefix: str) -> int:
        count = 0
        self._usage = None
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:  # at most 1,000 a page, which is also DeleteObjects' limit
                await self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                count += len(objects)
        return count

    async def usage(self) -> Usage:
        """Listed from the bucket at most once a minute (the operator page asks every 2 s)."""
        now = time.monotonic()
        if self._usage is not None and now - self._usage[0] < USAGE_CACHE_S:
            return self._usage[1]
        objects = size = 0
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                objects += 1
                size += item["Size"]
        self._usage = (now, Usage(objects, size))
        return self._usage[1]

    async def sweep(self, now: float) -> int:
        return 0  # a bucket lifecycle rule expires objects without the edge listing them

    def describe(self) -> str:
        return f"s3 {self.endpoint or 'aws'}/{self.bucket}/{self.prefix}"


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None
