# One image for the four services; docker-compose.yml picks the service with its command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY portal_auth ./portal_auth
RUN pip install --no-cache-dir . && useradd --system portal
USER portal

ENTRYPOINT ["portal-auth"]
