# syntax=docker/dockerfile:1.7
# ProGVC archive — CUDA image (Ray GPU workers running the codec actors).
# Build from the repository root:   docker build -f infra/docker/cuda.Dockerfile -t progvc-archive:0.1.0-cuda .
# NOT built on the development machine (it has no container engine); tests/test_infra.py checks it
# statically. See infra/README.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- stage 1: build the virtual environment (compilers live only here) -------------------------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, the CUDA build from the PyTorch CUDA wheel index (same version pin as constraints.txt).
# Its nvidia-* wheels carry the CUDA runtime, cuDNN and NCCL; the host supplies only the driver.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install --upgrade pip \
 && pip install --index-url ${TORCH_INDEX} torch==2.13.0
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline/ pipeline/
COPY workers/ workers/
COPY flows/ flows/
# Ray pinned to the version the project is tested with: every node, the Prefect worker and any Ray
# client must run the same Ray (and Python); k8s/raycluster.yaml's rayVersion says the same.
ARG RAY_VERSION=2.60.0
RUN pip install -c constraints.txt . "ray[default]==${RAY_VERSION}" && pip check

# ---- stage 2: runtime (no build tools; non-root) -------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# wget: KubeRay's liveness/readiness probes exec `wget` inside Ray containers. Not a build tool.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/bash progvc \
 && install -d -o progvc -g progvc /home/progvc/.prefect
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Flow sources (Prefect loads deployment entrypoints as files relative to /app), the deployment
# file and the shipped weights.
COPY --chown=progvc:progvc pipeline/ pipeline/
COPY --chown=progvc:progvc workers/ workers/
COPY --chown=progvc:progvc flows/ flows/
COPY --chown=progvc:progvc prefect.yaml ./
COPY --chown=progvc:progvc models/ models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/home/progvc/.prefect \
    PROGVC_DEVICE=auto \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER progvc
CMD ["progvc", "--help"]
