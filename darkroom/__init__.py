"""Darkroom: self-hosted image post-processing speaking the fal-ai/post-processing protocol.

This package is torch-free: it holds what the API, the workers and the CLI share (settings, the app
contracts, the status enum and the error hierarchy).
"""

__version__ = "0.1.0"
