# tgfleet container: non-root, health check on /healthz.
#   docker build -t tgfleet . && docker run -v tgfleet-data:/data -v $PWD/tgfleet.toml:/etc/tgfleet.toml tgfleet
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends openssl curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /data --shell /usr/sbin/nologin tgfleet
WORKDIR /opt/tgfleet
COPY pyproject.toml README.md ./
COPY actors actors
COPY messages messages
COPY system system
COPY bench bench
COPY ops ops
RUN python -m venv .venv && .venv/bin/pip install --no-cache-dir . \
    && touch .venv/.tgfleet-installed && chown -R tgfleet /opt/tgfleet
USER tgfleet
ENV TGFLEET_SYSTEM_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["/opt/tgfleet/ops/run"]
CMD ["--config", "/etc/tgfleet.toml"]
