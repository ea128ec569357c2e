"""The AsyncAPI document of every event, generated from the models in shared.events.

`portal-auth asyncapi` writes it to docs/asyncapi.json; a test keeps the committed copy current.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Union

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import create_model

from shared.events import EVENT_TYPES, TOPICS, Envelope, Event, dlq_topic

PRODUCERS = {"identity.events": "identity", "lockout.events": "lockout", "tenant.events": "tenant", "mailer.events": "mailer"}


def typed_envelope(cls: type[Event]) -> type[Envelope]:
    """The envelope of one event type, with its typed data, for the document."""
    fields: dict[str, Any] = {"type": (Literal[cls.TYPE], ...), "version": (Literal[cls.VERSION], cls.VERSION), "data": (cls, ...)}
    model: type[Envelope] = create_model(
        f"{cls.TYPE}Message", __base__=Envelope, __doc__=(cls.__doc__ or cls.TYPE).strip(), **fields)
    return model


def document() -> dict[str, Any]:
    broker = KafkaBroker(description="portal auth events: one topic per producing service, kept forever")
    for topic in TOPICS:
        models = tuple(typed_envelope(cls) for cls in EVENT_TYPES.values() if cls.TOPIC == topic)
        broker.publisher(topic, title=topic, schema=Union[models],  # noqa: UP007
                         description=f"Produced by {PRODUCERS[topic]}. Key: '<tenant>:<email>' for account events, "
                                     f"'<tenant>' for tenant events. Undeliverable messages go to {dlq_topic(topic)}.")
    spec = AsyncAPI(broker, title="portal auth events", version="1", schema_version="3.0.0")
    jsonable: dict[str, Any] = spec.to_specification().to_jsonable()
    return jsonable


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"
