"""One `ConfigurableResource` per external system, each with local defaults.

Each class is imported from its module when first named (`resources.MlflowResource`, or
`from resources import MlflowResource`), so naming one does not import every system's
client library.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names as type checkers see them
    from resources.events import EventsResource
    from resources.feast import FeastResource
    from resources.governance import GovernanceResource
    from resources.mlflow import MlflowResource, TrackingUnavailableError
    from resources.ray_cluster import RayResource
    from resources.retraining import RetrainingPolicyResource
    from resources.serving import ServingResource
    from resources.storage import StorageResource, UseCaseFiles

_MODULES = {
    "EventsResource": "resources.events",
    "FeastResource": "resources.feast",
    "GovernanceResource": "resources.governance",
    "MlflowResource": "resources.mlflow",
    "RayResource": "resources.ray_cluster",
    "RetrainingPolicyResource": "resources.retraining",
    "ServingResource": "resources.serving",
    "StorageResource": "resources.storage",
    "TrackingUnavailableError": "resources.mlflow",
    "UseCaseFiles": "resources.storage",
}

__all__ = [
    "EventsResource",
    "FeastResource",
    "GovernanceResource",
    "MlflowResource",
    "RayResource",
    "RetrainingPolicyResource",
    "ServingResource",
    "StorageResource",
    "TrackingUnavailableError",
    "UseCaseFiles",
]


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module 'resources' has no attribute '{name}'")
    return getattr(importlib.import_module(_MODULES[name]), name)
