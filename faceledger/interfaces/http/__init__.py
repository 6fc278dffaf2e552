"""The HTTP service: the Rekognition JSON 1.1 protocol, a native REST API, health and metrics."""
