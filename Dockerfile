# osvi-archiver's container image: the package and its dependencies at the versions in
# constraints.txt (what CI tested), nothing else. Runs as the unprivileged user 10001; the
# deploy/kubernetes-*.yaml Jobs run it.
#
#   docker build -t osvi-archiver .
#   mkdir -p recordings
#   docker run --rm -i --user "$(id -u):$(id -g)" -e OSVI_API_TOKEN \
#     -v "$PWD/recordings:/archive" osvi-archiver run --out /archive - < calls.csv
#
# (--user: a folder of yours mounted from the host is written as you, not as 10001.)
#
# The builder makes a wheel of the project and installs it into a venv; the final stage gets only
# that venv: no compiler, no build backend, no pip cache, no source tree.

FROM python:3.12-slim AS builder

WORKDIR /src
# What the wheel is built from (.dockerignore keeps the rest of the tree out anyway).
COPY pyproject.toml README.md LICENSE MANIFEST.in constraints.txt ./
COPY archiver/ archiver/
# The dev extras are not installed: only the package and its dependencies, each pinned by
# constraints.txt (every dependency has a wheel on PyPI: nothing is compiled).
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/osvi-archiver \
    && /opt/osvi-archiver/bin/pip install --no-cache-dir -c constraints.txt /wheels/osvi_archiver-*.whl

FROM python:3.12-slim

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="osvi-archiver" \
      org.opencontainers.image.description="Keep your own verified copy of every OSVI AI call recording" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-slim"

# A fixed numeric uid and gid: the Kubernetes examples' runAsUser, runAsGroup and fsGroup, and
# the owner of the files the tool writes on a mounted volume. No home folder (HOME is /tmp).
RUN groupadd --system --gid 10001 osvi \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin osvi \
    && install -d -o 10001 -g 10001 -m 0700 /archive

COPY --from=builder /opt/osvi-archiver /opt/osvi-archiver

ENV PATH=/opt/osvi-archiver/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

USER 10001:10001
WORKDIR /archive
ENTRYPOINT ["osvi-archiver"]
CMD ["--help"]
