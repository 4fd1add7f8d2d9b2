# syntax=docker/dockerfile:1
# mixer: a Mixer-style policy and telemetry service.
#   docker build -t mixer .
#   docker run -p 9091:9091 -p 15014:15014 -p 42422:42422 mixer
# Ports: 9091 gRPC (Mixer v1, ext_authz, ALS, RLS, health), 15014 admin (/metrics, /healthz,
# /readyz), 42422 Istio metrics from the prometheus adapter. Rules: /etc/mixer/rules (mount your
# own over it, or set MIXER_CONFIG_DIR).

FROM python:3.11-slim AS build
WORKDIR /src
# Exactly what the lock pins, every file checked against its hash; then mixer itself, with the
# locked build backend (requirements/run.txt holds it) and nothing resolved anew.
COPY requirements/run.txt ./requirements/
RUN python -m venv /opt/mixer \
 && /opt/mixer/bin/pip install --no-cache-dir --disable-pip-version-check \
      --require-hashes -r requirements/run.txt
COPY pyproject.toml README.md ./
COPY mixer ./mixer
COPY adapters ./adapters
RUN /opt/mixer/bin/pip install --no-cache-dir --disable-pip-version-check \
      --no-deps --no-build-isolation .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/mixer/bin:$PATH \
    MIXER_CONFIG_DIR=/etc/mixer/rules \
    MIXER_ADMIN_ADDRESS=0.0.0.0:15014
# The venv moves whole: same base image, so its interpreter link resolves alike.
COPY --from=build /opt/mixer /opt/mixer
RUN groupadd --system --gid 10001 mixer \
 && useradd --system --uid 10001 --gid mixer --no-create-home --shell /usr/sbin/nologin mixer
COPY rules/ /etc/mixer/rules/
USER 10001:10001
EXPOSE 9091 15014 42422
# Ready = config loaded and the gRPC port serving (the same check as Kubernetes' readiness probe).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('MIXER_ADMIN_ADDRESS', '0.0.0.0:15014').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=2)"]
ENTRYPOINT ["mixer"]
CMD ["serve"]
