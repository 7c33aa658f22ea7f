"""A use case's feature service versions as its Feast registry and model registry hold them."""

from feast import FeatureStore
from mlflow.tracking import MlflowClient

from facilflow_assets.features.service_versions import (
    FEATURE_SERVICE_TAG,
    FeatureDefinition,
    FeatureVersionError,
    ServiceLineup,
    ServiceVersion,
)
from facilflow_assets.governance.stages import STAGE_TAG, Stage
from facilflow_assets.scope import ModelScope
from facilflow_assets.use_case import UseCase
from resources import FeastResource, MlflowResource


def recorded_versions(services: list) -> list[ServiceVersion]:
    """The service versions among a project's Feast feature services."""
    return [v for v in map(ServiceVersion.from_service, services) if v]


def service_lineup(
    use_case: UseCase, scope: ModelScope, feast: FeastResource, mlflow: MlflowResource
) -> ServiceLineup:
    """The lineup applying the use case's file gives: the model registry is asked which
    older versions models still read only when there are older versions."""
    services = feast.feature_store(scope).list_feature_services()
    recorded = recorded_versions(services)
    current = FeatureDefinition.of(use_case).fingerprint()
    older = any(v.fingerprint != current for v in recorded)
    in_use = services_in_use(mlflow.client(), scope.registered_model_name) if older else set()
    issued = max(map(ServiceVersion.issued_by, services), default=0)
    return ServiceLineup.plan(use_case, recorded, in_use, issued)


def services_in_use(client: MlflowClient, registered_model: str) -> set[str]:
    """The feature services read by the model's versions that are not archived."""
    return {
        version.tags[FEATURE_SERVICE_TAG]
        for version in client.search_model_versions(f"name = '{registered_model}'")
        if version.tags.get(STAGE_TAG) != Stage.ARCHIVED.value
        and FEATURE_SERVICE_TAG in version.tags
    }


def current_service(store: FeatureStore, use_case: UseCase) -> str:
    """The name of the service version computing the file's features now."""
    fingerprint = FeatureDefinition.of(use_case).fingerprint()
    for version in recorded_versions(store.list_feature_services()):
        if version.fingerprint == fingerprint:
            return version.name
    raise FeatureVersionError(
        f"the Feast project {store.project} has no feature service for the features "
        f"{use_case.use_case}.yaml declares now; materialize its feast_registry asset first"
    )
