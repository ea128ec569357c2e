"""Settings every service shares; each service subclasses ServiceSettings once (twelve-factor)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_ADMIN_TOKEN = "local-admin-token"
LOCAL_MAIL_TOKEN_KEY = "bG9jYWwtb25seS1tYWlsLXRva2VuLWtleS0zMmJ5dGU="


class ConnectionSettings(BaseSettings):
    """Where the database and the brokers are: all an operator command needs."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    database_url: str = "postgresql+asyncpg://portal:portal@127.0.0.1:5432/portal_auth"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Where Kafka asks who is connecting (docker-compose.yml): each service's own SASL/SCRAM
    # principal, which the brokers' ACLs let write only its own topic. Empty: no authentication.
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_replication_factor: int = Field(1, ge=1)  # of the topics a service creates
    db_timeout_seconds: float = 2.0
    log_level: str = "INFO"

    def kafka_client_options(self) -> dict[str, str]:
        """aiokafka's keyword arguments for this principal (none without SASL)."""
        if not self.kafka_sasl_username:
            return {}
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": self.kafka_sasl_mechanism,
                "sasl_plain_username": self.kafka_sasl_username, "sasl_plain_password": self.kafka_sasl_password}


class ServiceSettings(ConnectionSettings):
    """A running service's settings. Its secrets have well-known defaults only for
    ENVIRONMENT=local; anywhere else (the default) they must be given."""

    #: Only the services that seal or open mailed tokens (identity, mailer) hold MAIL_TOKEN_KEY.
    uses_mail_token_key: ClassVar[bool] = False

    environment: str = "production"
    admin_token: str = LOCAL_ADMIN_TOKEN
    mail_token_key: str = LOCAL_MAIL_TOKEN_KEY

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        if self.environment != "local":
            if self.admin_token == LOCAL_ADMIN_TOKEN:
                raise ValueError("ADMIN_TOKEN must be set (or ENVIRONMENT=local on a developer's machine)")
            if self.uses_mail_token_key and self.mail_token_key == LOCAL_MAIL_TOKEN_KEY:
                raise ValueError("MAIL_TOKEN_KEY must be set (or ENVIRONMENT=local on a developer's machine)")
        return self
