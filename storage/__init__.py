"""Darkroom storage: object storage (S3 or local disk) and the Redis job store."""
