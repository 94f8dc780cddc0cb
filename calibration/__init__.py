"""The calibration corpus: candidate repos of known quality and the tooling that grades them."""
