"""Object-store backends and the factory that picks one from the settings.

The interface, the key layout and the local directory store are in the pure core
(:mod:`rankloop.core.storage`); this module adds :class:`S3Store` (boto3 against any
S3-compatible endpoint: AWS, SeaweedFS, MinIO) and :func:`store_from_config`, which both tiers
call with their settings (:mod:`rankloop.core.settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rankloop.core.errors import NotFound, StorageError
from rankloop.core.settings import Settings, load_settings
from rankloop.core.storage import LocalStore, ObjectStore, check_key


def _default(setting: str) -> Any:
    return Settings.model_fields[setting].default


class S3Store:
    """An S3-compatible bucket through boto3, with boto's retries for transient errors."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        public_endpoint_url: str | None = None,
        create_bucket: bool = False,
        max_attempts: int | None = None,
        retry_mode: str | None = None,
        connect_timeout_s: float | None = None,
        read_timeout_s: float | None = None,
    ):
        import boto3
        from botocore.config import Config

        # Unset: the settings' defaults (s3_max_attempts, s3_retry_mode, s3_*_timeout_s).
        config = Config(
            retries={
                "total_max_attempts": max_attempts or _default("s3_max_attempts"),
                "mode": retry_mode or _default("s3_retry_mode"),
            },
            connect_timeout=connect_timeout_s or _default("s3_connect_timeout_s"),
            read_timeout=read_timeout_s or _default("s3_read_timeout_s"),
            s3={"addressing_style": "path"},
            signature_version="s3v4",
        )
        common: dict[str, Any] = dict(
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        )
        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=endpoint_url, **common)
        # Browsers may reach the store under another name than the workers do.
        self._url_client = (
            boto3.client("s3", endpoint_url=public_endpoint_url, **common)
            if public_endpoint_url
            else self.client
        )
        if create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise StorageError(f"cannot create bucket {self.bucket!r}: {error}") from error

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"put {key!r} failed: {error}") from error

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=check_key(key))
            return response["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"no object {key!r}") from None
            raise StorageError(f"get {key!r} failed: {error}") from error
        except BotoCoreError as error:
            raise StorageError(f"get {key!r} failed: {error}") from error

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=check_key(key))
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise StorageError(f"head {key!r} failed: {error}") from error
        except BotoCoreError as error:  # connection refused, timeouts: transient for callers
            raise StorageError(f"head {key!r} failed: {error}") from error

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        try:
            return sorted(
                item["Key"]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            )
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"list {prefix!r} failed: {error}") from error

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=check_key(key))
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"delete {key!r} failed: {error}") from error

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        return self._url_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": check_key(key)},
            ExpiresIn=expires_s,
        )


def store_from_config(config: Settings | Mapping[str, Any]) -> ObjectStore:
    """The object store that ``config`` names; both tiers build theirs here.

    ``config`` is a :class:`~rankloop.core.settings.Settings` or a mapping of upper-case
    setting names (a Flask config; the environment is not read then). ``STORE_URL``:
    ``file:///path`` or a plain path -> :class:`LocalStore`; ``s3://bucket`` ->
    :class:`S3Store` with the ``S3_*`` settings.
    """
    settings = config if isinstance(config, Settings) else load_settings({}, config)
    url = settings.store_url
    if url.startswith("s3://"):
        return S3Store(
            url.removeprefix("s3://").strip("/"),
            endpoint_url=settings.s3_endpoint_url,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            region=settings.s3_region,
            public_endpoint_url=settings.s3_public_endpoint_url,
            create_bucket=settings.s3_create_bucket,
            max_attempts=settings.s3_max_attempts,
            retry_mode=settings.s3_retry_mode,
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
        )
    return LocalStore(url.removeprefix("file://"))
