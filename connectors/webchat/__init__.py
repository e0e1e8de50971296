"""Web chat: an embeddable widget (one script tag), a customer websocket and an HTTP fallback.

The channel in one folder: the connector (connector.py: a reply is a publication to the visitor's
socket; whether an agent is online), its routes (routes.py), the tenant's widget words (admin_routes.py),
its tables (models.py: whose uploads, the widget words) and their queries (store.py), the widget
(static/: a small loader and a Preact + htm app with its catalogues) and its protocol (README.md). A
visitor is a customer identity like any other; their files are core's attachments.
"""

from __future__ import annotations

from pathlib import Path

from connectors.webchat.admin_routes import ADMIN_ROUTES
from connectors.webchat.connector import WebchatConnector
from connectors.webchat.routes import ROUTES
from connectors.webchat.settings import WebchatSettings
from web.assets import JSON, SCRIPT, Asset
from web.channels import ChannelSpec

STATIC = Path(__file__).parent / "static"

CHANNEL = ChannelSpec(
    kind=WebchatConnector.kind,
    live_chat=True,
    connector=WebchatConnector,
    routes=(ROUTES,),
    admin_routes=(ADMIN_ROUTES,),
    settings=WebchatSettings,
    docs="connectors/webchat/README.md",
    # The widget's modules, imported by the loader (/webchat/widget.js) from the hub's origin.
    assets=(
        Asset("/webchat/app.mjs", STATIC / "app.mjs", SCRIPT),
        Asset("/webchat/chat.mjs", STATIC / "chat.mjs", SCRIPT),
        Asset("/webchat/i18n.mjs", STATIC / "i18n.mjs", SCRIPT),
        Asset("/webchat/locales/en.json", STATIC / "locales" / "en.json", JSON),
        Asset("/webchat/locales/zh-CN.json", STATIC / "locales" / "zh-CN.json", JSON),
    ),
)
