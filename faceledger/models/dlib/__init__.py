"""dlib's networks: a reader of dlib's own .dat serialization and their export to ONNX."""
