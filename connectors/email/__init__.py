"""Email: an SMTP receiver on the hub's loop, IMAP mailboxes, replies through the tenant's relay.

The channel in one folder: reading a mail (parse.py), what ties a mail to its ticket (ids.py),
one inbound path for SMTP and IMAP (receive.py, smtp.py, imap.py), composing and sending replies
(outbound.py), its tables (models.py) and the queries over them (store.py), its admin API
(admin_routes.py, schemas.py), its settings (settings.py) and its guide (README.md).
"""

from __future__ import annotations

from connectors.email.admin_routes import ADMIN_ROUTES
from connectors.email.connector import EmailConnector
from connectors.email.settings import EmailSettings
from web.channels import ChannelSpec

CHANNEL = ChannelSpec(
    kind=EmailConnector.kind,
    live_chat=False,
    connector=EmailConnector,
    admin_routes=(ADMIN_ROUTES,),
    settings=EmailSettings,
    docs="connectors/email/README.md",
)
