"""Which features of a feature service the online store holds: a view is loaded once the
online store materialized it, and a view new to the registry, or whose features changed
(applied afresh), holds nothing until the next load."""

from feast import FeatureService, FeatureStore


def unloaded_features(store: FeatureStore, service: FeatureService) -> dict[str, list[str]]:
    """The service's features, by view, that the online store has not loaded."""
    loaded = {v.name for v in store.list_feature_views() if v.materialization_intervals}
    on_demand = {v.name for v in store.list_on_demand_feature_views()}
    return {
        projection.name: [f.name for f in projection.features]
        for projection in service.feature_view_projections
        if projection.name not in loaded | on_demand
    }
