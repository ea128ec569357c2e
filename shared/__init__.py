"""The project's own library: event contract, Kafka wiring, database, outbox, settings, HTTP errors."""
