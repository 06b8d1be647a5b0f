# syntax=docker/dockerfile:1
# One image for every role: `eqr serve` (embedded, the default command), `eqr api` and `eqr worker`.
#
#   docker build -t eqr-serve .                       # CPU torch from the PyTorch CPU index (default)
#   docker build -t eqr-serve:cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#
# Two stages: the build stage installs into a virtualenv, the runtime stage copies only that
# virtualenv and the bundled model, and runs as an unprivileged user.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# CUDA base images come without Python: take the distribution's (>= 3.10)
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the chosen index: PyPI's default torch wheel is the multi-GB CUDA build.
# The project pins torch==2.13.0, which the local build (2.13.0+cpu, +cu128) satisfies.
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY client ./client
COPY eqr ./eqr
RUN pip install .

FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin eqr
COPY --from=build /opt/venv /opt/venv
# the bundled models: weights and config only (the training state stays out of the image)
COPY models/sudoku-small/config.json models/sudoku-small/model.safetensors /app/models/sudoku-small/
COPY models/maze-small/config.json models/maze-small/model.safetensors /app/models/maze-small/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EQR_MODEL=/app/models/sudoku-small,/app/models/maze-small
WORKDIR /app
USER eqr
# 8000: the HTTP API (serve, api); 9100: a worker's /metrics and /healthz
EXPOSE 8000 9100
CMD ["eqr", "serve", "--host", "0.0.0.0", "--port", "8000"]
