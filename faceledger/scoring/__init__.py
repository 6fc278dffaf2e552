"""A score -> a false match rate and a Similarity, per model: calibration, normalisation, scoring."""
