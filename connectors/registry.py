"""The channels this hub knows. Adding one is a new package under connectors/ and one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.base import Connector
from connectors.webchat.connector import WebchatConnector

if TYPE_CHECKING:
    from core.hub import Hub

CONNECTORS: tuple[type[Connector], ...] = (WebchatConnector,)


def build_connectors(hub: Hub) -> dict[str, Connector]:
    return {cls.kind: cls(hub) for cls in CONNECTORS}
