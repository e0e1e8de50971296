"""The channels this hub serves: a plain list of their descriptions, nothing registered by import.

Adding a channel is its package under connectors/ (with a ``CHANNEL`` description), one line
here, and one alembic revision for its tables (docs/architecture.md, "Adding a channel").
"""

from __future__ import annotations

from connectors import email, webchat, wechat, xmpp
from web.channels import ChannelSpec

CHANNELS: tuple[ChannelSpec, ...] = (
    webchat.CHANNEL,
    wechat.CHANNEL,
    email.CHANNEL,
    xmpp.CHANNEL,
)
