# syntax=docker/dockerfile:1
# Huawei Cloud task exporter. `docker run -p 10418:10418 IMAGE --demo` needs no config at all;
# for real use mount a config at /etc/huaweicloud-task-exporter/config.yml (read-only).
# Dependencies come from requirements.lock (exact versions and their hashes, kept current by
# scripts/lock), never from whatever is newest at build time.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
RUN groupadd --system --gid 10418 exporter \
    && useradd --system --uid 10418 --gid exporter --no-create-home \
       --home-dir /var/lib/huaweicloud-task-exporter exporter \
    && install -d -o exporter -g exporter -m 0750 /var/lib/huaweicloud-task-exporter \
    && install -d -m 0755 /etc/huaweicloud-task-exporter
COPY requirements.lock /tmp/requirements.lock
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r /tmp/requirements.lock \
    && pip install --no-cache-dir --no-deps --no-index /wheels/huaweicloud_task_exporter-*.whl \
    && pip check \
    && rm -rf /wheels /tmp/requirements.lock
USER 10418:10418
WORKDIR /var/lib/huaweicloud-task-exporter
# The state file (state_path defaults to ./huaweicloud-task-exporter.db, i.e. here).
VOLUME ["/var/lib/huaweicloud-task-exporter"]
EXPOSE 10418
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:10418/healthz', timeout=4)"]
ENTRYPOINT ["huaweicloud-task-exporter"]
CMD ["--config.file=/etc/huaweicloud-task-exporter/config.yml"]
