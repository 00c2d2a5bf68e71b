# Aurora Config service image: `docker build -t aurora-config-service .`
# Multi-stage: dependencies are built in a virtualenv, and only that virtualenv (runtime
# dependencies, no compilers, no test tools) is copied onto a slim base, run as a non-root user.

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY constraints.txt pyproject.toml README.md ./
COPY client ./client
COPY service ./service
COPY cache ./cache
COPY database ./database
RUN pip install --quiet -c constraints.txt ./client . && python -m service --help > /dev/null

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin aurora
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOST=0.0.0.0 PORT=8004 AURORA_LOG_FORMAT=json
USER aurora
WORKDIR /tmp
EXPOSE 8004
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8004/health/live', timeout=2)"]
ENTRYPOINT ["python", "-m", "service"]
