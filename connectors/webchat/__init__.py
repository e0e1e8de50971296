"""Web chat: an embeddable widget (one script tag), a customer websocket and an HTTP fallback.

The channel in one folder: the connector (connector.py: a reply is a publication to the visitor's
socket), its routes (routes.py), the widget (static/) and its protocol (README.md). It has no
tables of its own: a visitor is a customer identity like any other.
"""

from __future__ import annotations

from connectors.webchat.connector import WebchatConnector
from connectors.webchat.routes import ROUTES
from web.channels import ChannelSpec

CHANNEL = ChannelSpec(
    kind=WebchatConnector.kind,
    live_chat=True,
    connector=WebchatConnector,
    routes=(ROUTES,),
    docs="connectors/webchat/README.md",
)
