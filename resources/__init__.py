"""One `ConfigurableResource` per external system, each with local defaults."""

from resources.storage import StorageResource
from resources.tenancy import TenantResource

__all__ = ["StorageResource", "TenantResource"]
