# imagine-bot: slim, non-root, data on a volume. Build: docker build -t imagine-bot .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMAGINE__BOT__DATA_DIR=/data \
    IMAGINE__HTTP__LISTEN=0.0.0.0:9090 \
    IMAGINE__WEB__LISTEN=0.0.0.0:8080

RUN groupadd --system --gid 10001 imagine \
    && useradd --system --uid 10001 --gid imagine --home-dir /app --shell /usr/sbin/nologin imagine \
    && mkdir -p /data \
    && chown imagine:imagine /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
# A font with CJK glyphs, so the demo provider draws Chinese prompts instead of boxes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*
# The same install as the README's quick start (pip install of this package).
RUN pip install --no-cache-dir .

USER 10001:10001
VOLUME ["/data"]
# Run in the volume: /data/config.toml is read when present; an empty volume starts the web
# console (demo mode until a key is given) with its operator token kept in /data.
WORKDIR /data
EXPOSE 8080 9090

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["imagine-bot"]
CMD ["run"]
