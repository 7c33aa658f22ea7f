"""Feast field lists generated from a feature table spec, so names and types are written once."""

from feast import Field
from feast.types import Bool, Float64, Int64, String, UnixTimestamp

from facilflow_assets.feature_spec import ColumnType, FeatureTableSpec

FEAST_TYPES = {
    "string": String,
    "int": Int64,
    "float": Float64,
    "bool": Bool,
    "timestamp": UnixTimestamp,
}


def feature_fields(table: FeatureTableSpec) -> list[Field]:
    """The table's feature columns (kept columns and computed features) as Feast fields."""
    descriptions = {f.name: f.description for f in table.features}
    types: dict[str, ColumnType] = table.output_types()
    names = [*table.keep, *(f.name for f in table.features)]
    return [
        Field(name=name, dtype=FEAST_TYPES[types[name]], description=descriptions.get(name, ""))
        for name in names
    ]
