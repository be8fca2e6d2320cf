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
EXPOSE 8000
CMD ["trainyard", "serve", "--host", "0.0.0.0"]
