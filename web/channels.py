"""The full description of a channel, as a channel package gives it (``connectors/<kind>/__init__.py``).

Core sees a channel through :class:`core.channels.ChannelInfo` (kind, live chat or not, connector
class); the composition root also adds its routes to the application and its route tables to the
API registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.channels import Connector
from web.api import RouteTable
from web.assets import Asset


@dataclass(frozen=True)
class ChannelSpec:
    kind: str
    # Live chats go back to routing when their agent drops (core.channels.ChannelInfo).
    live_chat: bool
    connector: type[Connector]
    # What customers and the channel's platform call: web-hooks, the widget and its socket.
    routes: tuple[RouteTable, ...] = ()
    # What tenant admins call to configure the channel (accounts, secrets).
    admin_routes: tuple[RouteTable, ...] = ()
    # The class that reads the channel's settings from CHANNELHUB_* variables, if it has any.
    settings: type | None = None
    # The channel's guide, relative to the repository root.
    docs: str = ""
    # Static files customers' pages load (the widget's modules and catalogues): served from the
    # hub's origin to any site (web.assets).
    assets: tuple[Asset, ...] = ()
