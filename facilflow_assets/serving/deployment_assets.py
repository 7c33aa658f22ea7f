"""The deployment asset: its materialization is the live endpoint serving the Production
version (and a Staging challenger for a share of requests) on Ray Serve."""

import dagster as dg

from facilflow_assets.asset_keys import DEPLOYMENT_GROUP, UseCaseKeys
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.rollout import DeploymentConfig, roll_out
from facilflow_assets.use_case import UseCase
from resources import (
    EventsResource,
    FeastResource,
    MlflowResource,
    ServingResource,
    StorageResource,
)


def build_deployment_assets(use_case: UseCase, scope: ModelScope) -> list[dg.AssetsDefinition]:
    """The use case's live endpoint."""
    keys = UseCaseKeys(scope)

    @dg.asset(
        key=keys.prediction_endpoint,
        group_name=DEPLOYMENT_GROUP,
        kinds={"ray", "mlflow", "feast"},
        deps=[keys.registered_model_version, keys.online_store],
        description="The real-time endpoint on Ray Serve: the Production version by its alias, "
        "and the Staging version as challenger for the configured share of requests.",
    )
    def prediction_endpoint(
        context: dg.AssetExecutionContext,
        config: DeploymentConfig,
        storage: StorageResource,
        mlflow: MlflowResource,
        feast: FeastResource,
        serving: ServingResource,
        events: EventsResource,
    ) -> dg.MaterializeResult:
        served = roll_out(
            config,
            use_case,
            scope,
            storage,
            mlflow,
            feast,
            serving,
            events,
            log=context.log.info,
            dagster_run_id=context.run.run_id,
        )
        return dg.MaterializeResult(
            metadata={
                "url": dg.MetadataValue.url(served.url),
                "production_version": served.production.version,
                "challenger_version": served.challenger.version if served.challenger else "",
                "challenger_share": served.challenger_share,
                "deployed_at": served.deployed_at.isoformat(),
                "replicas": config.num_replicas,
                "sample_request": dg.MetadataValue.json(served.sample),
                "sample_answer": dg.MetadataValue.json(served.answer),
            }
        )

    return [prediction_endpoint]
