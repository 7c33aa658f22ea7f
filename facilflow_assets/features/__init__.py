"""Feature engineering: a declarative spec, its polars engine, and the Feast integration."""
