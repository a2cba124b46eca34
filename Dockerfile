# shoal: one image for the scheduler and the workers.
#   docker build -t shoal:latest .
#   docker run --rm shoal:latest shoal --version
FROM python:3.11-slim

# no root inside the container; a fixed uid so Kubernetes securityContext can name it
RUN useradd --create-home --uid 1000 shoal
WORKDIR /opt/shoal
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER shoal
ENV PYTHONUNBUFFERED=1
# scheduler, dashboard (the ports deploy/kubernetes/ uses)
EXPOSE 8786 8787
ENTRYPOINT ["shoal"]
CMD ["--help"]
