"""Jobs: named selections of the lifecycle that people and sensors launch."""

import dagster as dg

warehouse_job = dg.define_asset_job(
    "warehouse_job",
    selection=dg.AssetSelection.groups("raw", "dbt"),
    description="Reload the raw flight data and rebuild the dbt warehouse with its tests.",
)

all_jobs = [warehouse_job]
