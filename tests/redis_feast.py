"""Feast with the real Redis (127.0.0.1:6379) as its online store, as production runs it;
each test names a scope (a tenant) of its own, whose project's keys it removes."""

from resources import FeastResource, StorageResource

REDIS_URL = "127.0.0.1:6379"


def redis_feast(storage: StorageResource) -> FeastResource:
    """Feast over `storage`'s files, online in Redis."""
    return FeastResource(storage=storage, online_store="redis", redis_url=REDIS_URL)
