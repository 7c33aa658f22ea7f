"""The asset keys of a use case's lifecycle, one place for every stage to find the others'.

Keys are `<tenant>/<use case>/<stage>/<asset>`; the stage is also the asset's group, so
the Dagster UI groups every use case's assets of one stage together.
"""

from dataclasses import dataclass

import dagster as dg

from facilflow_assets.scope import ModelScope

FEATURES_GROUP = "features"
TRAINING_GROUP = "training"
EVALUATION_GROUP = "evaluation"
REGISTRY_GROUP = "registry"
DEPLOYMENT_GROUP = "deployment"
MONITORING_GROUP = "monitoring"


@dataclass(frozen=True)
class UseCaseKeys:
    scope: ModelScope

    def feature_table(self, table: str) -> dg.AssetKey:
        return self.scope.key(FEATURES_GROUP, table)

    @property
    def feast_registry(self) -> dg.AssetKey:
        return self.scope.key(FEATURES_GROUP, "feast_registry")

    @property
    def online_store(self) -> dg.AssetKey:
        return self.scope.key(FEATURES_GROUP, "online_store")

    @property
    def training_set(self) -> dg.AssetKey:
        return self.scope.key(FEATURES_GROUP, "training_set")

    @property
    def trained_model(self) -> dg.AssetKey:
        return self.scope.key(TRAINING_GROUP, "trained_model")

    @property
    def evaluation_report(self) -> dg.AssetKey:
        return self.scope.key(EVALUATION_GROUP, "evaluation_report")

    @property
    def registered_model_version(self) -> dg.AssetKey:
        return self.scope.key(REGISTRY_GROUP, "registered_model_version")

    @property
    def prediction_endpoint(self) -> dg.AssetKey:
        return self.scope.key(DEPLOYMENT_GROUP, "prediction_endpoint")

    @property
    def batch_predictions(self) -> dg.AssetKey:
        return self.scope.key(DEPLOYMENT_GROUP, "batch_predictions")

    @property
    def feature_drift(self) -> dg.AssetKey:
        return self.scope.key(MONITORING_GROUP, "feature_drift")

    @property
    def prediction_drift(self) -> dg.AssetKey:
        return self.scope.key(MONITORING_GROUP, "prediction_drift")

    @property
    def realized_quality(self) -> dg.AssetKey:
        return self.scope.key(MONITORING_GROUP, "realized_quality")

    @property
    def serving_health(self) -> dg.AssetKey:
        return self.scope.key(MONITORING_GROUP, "serving_health")


def op_name(key: dg.AssetKey) -> str:
    """The name of the op computing `key`: where a run's config for the asset goes."""
    return key.to_python_identifier()
