# Two images from one file: a slim API without torch, and the worker.
#   API:     docker build --target api -t darkroom-api .
#   Worker:  docker build --target worker -t darkroom-worker .   (PyPI's Linux torch wheels bundle CUDA)
#   CPU worker: add --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu (docker-compose.cpu.yml
#               does), and --build-arg TORCH_SPEC='torch==2.13.0' to pin the version
FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY darkroom ./darkroom
COPY api ./api
COPY worker ./worker
COPY storage ./storage

# The API, the operator commands and Flower: darkroom[server] (no torch).
FROM base AS api
RUN pip install ".[server,ops]" && useradd --create-home darkroom
USER darkroom
EXPOSE 8000
CMD ["darkroom", "api", "--host", "0.0.0.0"]

# The workers: torch first (so a CPU index can be chosen), then darkroom[worker].
FROM base AS worker
ARG TORCH_SPEC="torch>=2.3,<3"
ARG TORCH_INDEX=""
# g++: the CPU workers compile the point-wise effects into fused kernels (torch.compile's C++ backend,
# DARKROOM_WORKER_FUSE_EFFECTS); the image's Python already carries its headers
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
RUN if [ -n "$TORCH_INDEX" ]; then pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"; \
    else pip install "$TORCH_SPEC"; fi
# ONNX Runtime (the remove_background step): the CUDA build on the GPU image, the CPU build with
# TORCH_INDEX set (same import name; docs/models.md)
RUN pip install ".[worker]" \
    && if [ -z "$TORCH_INDEX" ]; then pip uninstall -y onnxruntime && pip install "onnxruntime-gpu>=1.18,<2"; fi \
    && useradd --create-home darkroom \
    && install -d -o darkroom -g darkroom /models  # the models volume starts owned by darkroom
USER darkroom
EXPOSE 9808
CMD ["darkroom", "worker"]
