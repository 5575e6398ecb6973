# syntax=docker/dockerfile:1
# gio-downloader image: the daemon as a non-root user, state in a volume.
#
#   docker build -t gio-downloader .
#   docker run -d --name gio-downloader --env-file env \
#     -v "$PWD/config.yaml:/etc/gio-downloader/config.yaml:ro" \
#     -v gio-state:/var/lib/gio-downloader -p 127.0.0.1:9108:9108 gio-downloader
#
# The config is not baked in: mount it (or a Kubernetes ConfigMap) at /etc/gio-downloader.

# ---- build: the project's wheel plus a wheel of every dependency --------------------------
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY downloader ./downloader
# With the [s3] extra: the Kubernetes deployment (deploy/k8s) writes to a shared S3 store.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[s3]"

# ---- runtime: the wheels installed offline, no compilers, no build context -----------------
FROM python:3.11-slim-bookworm

# pip runs as root only at build time, into the image's site-packages; it compiles the .pyc
# files then, so a read-only root filesystem at run time costs nothing.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Installing the locally built wheel files (not names from an index) pins every version to what
# the build stage resolved; the bind mount keeps the wheels themselves out of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl

# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it and volume ownership is
# predictable on the host.
RUN groupadd --system --gid 10001 gio \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/gio-downloader --shell /usr/sbin/nologin gio \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/gio-downloader \
    && install -d -m 0755 /etc/gio-downloader

# Data (raw/) and checkpoint.db. A named volume takes this folder's ownership on first use.
VOLUME ["/var/lib/gio-downloader"]
WORKDIR /var/lib/gio-downloader
USER 10001:10001

# health.listen (/healthz, /readyz, /metrics). Publishing the port or probing from outside the
# container needs health.listen: 0.0.0.0:9108 in the config; the HEALTHCHECK below works with
# 127.0.0.1:9108 too, since it runs inside the container. No curl in slim: Python's urllib,
# with proxies disabled so an HTTP_PROXY in the environment cannot hijack a loopback call.
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:9108/healthz', timeout=3)"]

# SIGTERM: in-flight parts finish within shutdown_grace_seconds (10 s), then exit 0. Give
# `docker stop -t 30` / terminationGracePeriodSeconds more than that grace.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gio-downloader"]
CMD ["run", "-c", "/etc/gio-downloader/config.yaml"]
