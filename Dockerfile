# One image for the API and the workers. Build: docker build -t trainyard .
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# A CUDA-enabled torch for GPU workers; pass --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu for CPU-only.
ARG TORCH_INDEX=""
RUN if [ -n "$TORCH_INDEX" ]; then pip install --no-cache-dir "torch==2.13.0" --index-url "$TORCH_INDEX"; \
    else pip install --no-cache-dir "torch==2.13.0"; fi
COPY pyproject.toml README.md ./
COPY core core
COPY api api
COPY worker worker
COPY cli cli
COPY migrations migrations
RUN pip install --no-cache-dir -e .
# `docker run` serves with API keys on, keeping its database, uploads and artifacts in /data:
#   docker run -d -p 8000:8000 -v trainyard:/data trainyard
#   docker run --rm -v trainyard:/data trainyard trainyard keys create --tenant NAME   # prints the key once
# (`trainyard serve` refuses a non-loopback address while TRAINYARD_AUTH is off.)
ENV TRAINYARD_AUTH=api_key TRAINYARD_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["trainyard", "serve", "--host", "0.0.0.0"]
