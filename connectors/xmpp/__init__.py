"""XMPP: tenants' client accounts and XEP-0114 components, connected on the hub's loop with slixmpp.

The channel in one folder: reading a stanza (parse.py), one account's connection under its lease
with acks both ways (link.py), the links and replies (connector.py), its tables (models.py) and
the queries over them (store.py), its admin API (admin_routes.py, schemas.py), its settings
(settings.py) and its guide (README.md).
"""

from __future__ import annotations

from connectors.xmpp.admin_routes import ADMIN_ROUTES
from connectors.xmpp.connector import XmppConnector
from connectors.xmpp.settings import XmppSettings
from web.channels import ChannelSpec

CHANNEL = ChannelSpec(
    kind=XmppConnector.kind,
    live_chat=True,
    connector=XmppConnector,
    admin_routes=(ADMIN_ROUTES,),
    settings=XmppSettings,
    docs="connectors/xmpp/README.md",
)
