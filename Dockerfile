# The llmroute operator image.
#
#   docker build -t ghcr.io/llmroute/llmroute:0.1.0 .
#
# Air-gapped: put the wheels of every dependency (and of hatchling, the build backend) in
# wheels/ at the root of the build context; the build then installs from them alone and
# needs no package index (see docs/install.md).
#
# Both stages use the same base image: the virtual environment built in the first one links
# to the Python of the base.

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Dependencies first, the operator's included (the extra `operator`): this layer is rebuilt
# only when pyproject.toml changes. The wheel[s] pattern matches nothing when the context has
# no wheels/ folder, and pip uses the package index; with wheels, their files land in /wheels
# next to pyproject.toml and a pip config file points every pip run of this stage (build
# isolation included) at them alone.
COPY pyproject.toml wheel[s] /wheels/
SHELL ["/bin/sh", "-eu", "-c"]
RUN mv /wheels/pyproject.toml /src/pyproject.toml; \
    if ls /wheels/*.whl >/dev/null 2>&1; then \
        printf '[global]\nno-index = true\nfind-links = /wheels\n' > /etc/pip.conf; \
    fi; \
    python -m venv /opt/venv; \
    python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["operator"]))' \
        > /tmp/requirements.txt; \
    /opt/venv/bin/pip install --requirement /tmp/requirements.txt

# Then the project itself, as a wheel (the CRDs are package data), with the extra `operator`:
# its packages are in place from the layer above, so pip adds only llmroute.
COPY README.md /src/
COPY crds/ /src/crds/
COPY operator/ /src/operator/
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/dist /src; \
    wheel=$(echo /tmp/dist/llmroute-*.whl); \
    /opt/venv/bin/pip install "${wheel}[operator]"; \
    /opt/venv/bin/llmroute --version


FROM python:3.11-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="llmroute" \
      org.opencontainers.image.description="Kubernetes operator for a governed, OpenAI-compatible LLM gateway built on LiteLLM" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/llmroute/llmroute" \
      org.opencontainers.image.url="https://github.com/llmroute/llmroute"

# LITELLM_LOCAL_MODEL_COST_MAP: litellm reads the price map it ships instead of fetching one
# at import; the operator's egress may be limited to the Kubernetes API.
# USER and HOME: the UID has no passwd entry (any UID works, as on OpenShift); kopf names
# itself after the user, and HOME must be writable with a read-only root (/tmp is a volume).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    USER=llmroute \
    HOME=/tmp

COPY --from=builder /opt/venv /opt/venv

# A numeric user, so that runAsNonRoot can verify it without a passwd entry.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["llmroute"]
CMD ["run"]
