"""One `ConfigurableResource` per external system, each with local defaults."""

from resources.events import EventsResource
from resources.feast import FeastResource
from resources.governance import GovernanceResource
from resources.mlflow import MlflowResource, TrackingUnavailableError
from resources.ray_cluster import RayResource
from resources.retraining import RetrainingPolicyResource
from resources.serving import ServingResource
from resources.storage import StorageResource, UseCaseFiles

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
