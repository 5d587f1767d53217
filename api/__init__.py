"""The Darkroom HTTP API (FastAPI). Never imports torch."""
