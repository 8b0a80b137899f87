"""The obstore client of a bucket destination, built from its settings; its credentials
from the environment and the provider chains only (never from a setting)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from obstore.store import from_url

from archiver.errors import UsageError
from archiver.location import StoreUrl
from archiver.storeerrors import StoreError, reason

if TYPE_CHECKING:
    from archiver.settings import Settings


def store_of(url: StoreUrl, settings: Settings, *, quick: bool = False) -> Any:
    """The obstore client of `url`: settings for endpoint, region, plain http, encryption,
    the rest (credentials first) from the environment and the provider chains. `quick`: the
    lease's, whose requests must answer within seconds (obstore's default retries for 3 min).
    """
    config: dict[str, Any] = {}
    endpoint = settings.store_endpoint
    if endpoint and endpoint.startswith("http:") and not settings.store_allow_http:
        raise UsageError(f"store_endpoint {endpoint} is plain http: add --store-allow-http "
                         "(a local test store only), or use https")  # fmt: skip
    if url.scheme == "s3":
        config.update(
            endpoint=endpoint,
            region=settings.store_region,
            server_side_encryption=settings.store_sse,
            sse_kms_key_id=settings.store_sse_kms_key_id,
        )
    elif settings.store_sse or settings.store_sse_kms_key_id:
        raise UsageError(
            f"store_sse and store_sse_kms_key_id are S3's; {url.scheme}:// encrypts with the "
            "bucket's own default key"
        )
    else:
        config.update({"base_url" if url.scheme == "gs" else "endpoint": endpoint})
    config = {key: value for key, value in config.items() if value is not None}
    options: dict[str, Any] = {"allow_http": True} if settings.store_allow_http else {}
    retry: dict[str, Any] | None = None
    if quick:
        options.update(timeout="10s", connect_timeout="5s")
        retry = {"max_retries": 2, "retry_timeout": timedelta(seconds=10)}
    build: Any = from_url  # its overloads are typed per scheme; ours is known at run time
    try:
        store = build(f"{url.scheme}://{url.bucket}/{url.prefix}", config=config,
                      client_options=options or None, retry_config=retry)  # fmt: skip
    except Exception as exc:  # a configuration obstore refuses (no region found, say)
        raise StoreError(f"cannot use {url}: {reason(exc)}") from exc
    if (store.prefix or "") != url.prefix:  # never another prefix than the one shown
        raise UsageError(f"{url}: the store reads its prefix as {store.prefix!r}")
    return store
