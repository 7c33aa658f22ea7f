"""The flight-delay use case's feature spec, loaded (and checked) when the code loads."""

from pathlib import Path

from facilflow_assets.features.spec import load_feature_spec

SPEC_PATH = Path(__file__).parent / "specs" / "flight_delay.yaml"
FLIGHT_DELAY_SPEC = load_feature_spec(SPEC_PATH)
FEATURE_SERVICE = "flight_delay_v1"
