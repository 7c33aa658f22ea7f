"""The feature repository with the real Redis (127.0.0.1:6379) as its online store, in a
Feast project of a tenant's own, as production runs it."""

from facilflow_assets.resource_map import FEATURE_REPO
from resources import FeastResource, StorageResource, TenantResource

REDIS_URL = "127.0.0.1:6379"


def redis_feast(tenant: str, storage: StorageResource) -> FeastResource:
    """`tenant`'s flight-delay features over `storage`'s files, online in Redis."""
    return FeastResource(
        repo_path=FEATURE_REPO,
        storage=storage,
        tenant=TenantResource(tenant=tenant, use_case="flight_delay"),
        online_store="redis",
        redis_url=REDIS_URL,
    )
