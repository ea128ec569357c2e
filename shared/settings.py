"""Settings every service shares; each service subclasses ServiceSettings once (twelve-factor).

Outside ``ENVIRONMENT=local`` (the default is production) a service refuses to start with a
setting that is only fit for one developer's machine: the well-known local secrets, an
``ADMIN_TOKEN`` shorter than 32 characters, and, in the services that read them,
``COOKIE_SECURE=false``, a ``PORTAL_URL_TEMPLATE`` that is not https, ``BCRYPT_ROUNDS`` below 10.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL = "local"
LOCAL_ADMIN_TOKEN = "local-admin-token"
LOCAL_MAIL_TOKEN_KEY = "bG9jYWwtb25seS1tYWlsLXRva2VuLWtleS0zMmJ5dGU="
MIN_ADMIN_TOKEN_CHARS = 32


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

    environment: str = "production"
    admin_token: str = LOCAL_ADMIN_TOKEN

    @property
    def local(self) -> bool:
        return self.environment == LOCAL

    def refuse_outside_local(self, problem: str | None) -> None:
        """Stops the service at start with ``problem`` unless it runs on a developer's machine."""
        if problem and not self.local:
            raise ValueError(f"{problem} (allowed only with ENVIRONMENT=local, on a developer's machine)")

    @model_validator(mode="after")
    def _admin_token(self) -> ServiceSettings:
        if not self.admin_token.strip():
            raise ValueError("ADMIN_TOKEN must not be empty")  # anywhere: a bare "Bearer" must open nothing
        self.refuse_outside_local("ADMIN_TOKEN must be set" if self.admin_token == LOCAL_ADMIN_TOKEN else None)
        self.refuse_outside_local(f"ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters"
                                  if len(self.admin_token) < MIN_ADMIN_TOKEN_CHARS else None)
        return self


class MailTokenSettings(ServiceSettings):
    """A service that holds the key for tokens in transit: identity and the mailer, no other."""

    mail_token_key: str = LOCAL_MAIL_TOKEN_KEY

    @model_validator(mode="after")
    def _mail_token_key(self) -> MailTokenSettings:
        self.refuse_outside_local("MAIL_TOKEN_KEY must be set" if self.mail_token_key == LOCAL_MAIL_TOKEN_KEY else None)
        return self
