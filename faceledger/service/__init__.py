"""The cloud API's face operations, shaped by botocore's Rekognition model."""
