"""The channels this hub knows. Adding one is a new package under connectors/ and one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.base import Connector
from connectors.webchat.connector import WebchatConnector
from connectors.wechat.connector import WeChatConnector

if TYPE_CHECKING:
    from core.hub import Hub

CONNECTORS: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    """Make a channel known to every hub built from now on (usable as a class decorator)."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    CONNECTORS[cls.kind] = cls
    return cls


def connector_class(kind: str) -> type[Connector] | None:
    return CONNECTORS.get(kind)


def realtime_channels() -> frozenset[str]:
    return frozenset(kind for kind, cls in CONNECTORS.items() if cls.realtime)


def build_connectors(hub: Hub) -> dict[str, Connector]:
    return {kind: cls(hub) for kind, cls in CONNECTORS.items()}


register(WebchatConnector)
register(WeChatConnector)
