"""What every runner returns."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["PausableService", "Service"]


@runtime_checkable
class Service(Protocol):
    def stop(self) -> None:
        """Terminate cleanly (signal, wait, then kill). Calling it again does nothing."""


@runtime_checkable
class PausableService(Service, Protocol):
    """A service whose outage tests can simulate: only Kafka is one."""

    def pause(self) -> None:
        """Stop the process but keep its data, so that it can be started again."""

    def resume(self) -> None:
        """Start it again on the same port and data; return once it is ready."""
