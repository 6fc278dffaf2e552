"""Datasets, protocols, calibration fitting and the demographic audit: the only layer that reads
demographic labels."""
