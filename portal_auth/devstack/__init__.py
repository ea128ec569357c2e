"""Local infrastructure for development and tests: Kafka, PostgreSQL and a mail catcher.

Every ``start_*`` function runs its service as a child process that logs under the
given work directory and is stopped when this Python process exits.
"""

from ._net import free_port
from ._proc import DevstackError
from .kafka import KafkaHandle, ensure_kafka_jars, start_kafka
from .mail import MailCatcherHandle, start_mail_catcher
from .postgres import PostgresHandle, start_postgres
from .service import PausableService, Service

__all__ = [
    "DevstackError",
    "KafkaHandle",
    "MailCatcherHandle",
    "PausableService",
    "PostgresHandle",
    "Service",
    "ensure_kafka_jars",
    "free_port",
    "start_kafka",
    "start_mail_catcher",
    "start_postgres",
]
