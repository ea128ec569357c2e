from __future__ import annotations

from email.headerregistry import Address

from pydantic import SecretStr, field_validator, model_validator

from shared.settings import MailTokenSettings


class MailerSettings(MailTokenSettings):
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_validate_certs: bool = True
    smtp_ca_file: str | None = None  # a private CA for the relay's certificate
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "portal@localhost"
    portal_url_template: str = "http://{host}:8080"
    mailer_retry_base_seconds: float = 5.0
    mailer_retry_max_seconds: float = 1800.0
    mailer_max_attempts: int = 12
    mailer_throttle_per_hour: int = 5
    # How long a claimed email is its sender's alone; a send is cut off at half of it, so a
    # live sender always records its outcome before another process may take the email.
    mailer_lease_seconds: float = 120.0
    mailer_poll_seconds: float = 1.0
    mailer_batch: int = 10

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str) -> str:
        Address(addr_spec=value)  # raises for anything that is not one plain address
        return value

    @field_validator("portal_url_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{host}" not in value:
            raise ValueError("PORTAL_URL_TEMPLATE must contain {host}")
        value.format(host="example.test")  # raises for any other placeholder
        return value

    @field_validator("mailer_max_attempts", "mailer_throttle_per_hour", "mailer_batch")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @model_validator(mode="after")
    def _links_over_https(self) -> MailerSettings:
        self.refuse_outside_local(None if self.portal_url_template.startswith("https://")
                                  else "PORTAL_URL_TEMPLATE must start with https:// (links carry tokens)")
        return self

    @model_validator(mode="after")
    def _lease_outlasts_send(self) -> MailerSettings:
        if self.mailer_lease_seconds < 2 * self.smtp_timeout_seconds + 1:
            raise ValueError("MAILER_LEASE_SECONDS must exceed twice SMTP_TIMEOUT_SECONDS")
        return self

    @property
    def send_budget_seconds(self) -> float:
        return self.mailer_lease_seconds / 2
