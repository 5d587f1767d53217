"""Diffusion on the worker: loading models once per process (``loader``), driving diffusers pipelines
on a batch (``calls``), tiling large upscales (``tiler``) and per-step progress and cancellation
(``steps``). worker/pipelines/diffusion.py wires them into the runner."""
