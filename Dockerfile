# One image for the API and the workers.
#   CPU:  docker build --build-arg TORCH_SPEC='torch==2.13.0' --build-arg TORCH_INDEX=<a CPU wheel index> .
#   GPU:  docker build .   (PyPI's default Linux torch wheels bundle CUDA)
FROM python:3.11-slim

ARG TORCH_SPEC="torch>=2.3,<3"
ARG TORCH_INDEX=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN if [ -n "$TORCH_INDEX" ]; then pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"; \
    else pip install "$TORCH_SPEC"; fi
COPY pyproject.toml README.md ./
COPY darkroom ./darkroom
COPY api ./api
COPY worker ./worker
COPY storage ./storage
RUN pip install ".[ops]" && useradd --create-home darkroom \
    && install -d -o darkroom -g darkroom /models  # the models volume (worker) starts owned by darkroom
USER darkroom
EXPOSE 8000 9808
CMD ["darkroom", "api", "--host", "0.0.0.0"]
