"""WeChat: Official Account web-hooks (every mode) and WeCom customer service (kf).

The channel in one folder: its protocol (inbound.py, outbound.py, xmlparse.py, api.py), its tables
(models.py) and the queries over them (store.py), its web-hooks (routes.py), its admin API
(admin_routes.py, schemas.py), its settings (settings.py) and its guide (README.md).
"""

from __future__ import annotations

from connectors.wechat.admin_routes import ADMIN_ROUTES
from connectors.wechat.connector import WeChatConnector
from connectors.wechat.routes import ROUTES
from connectors.wechat.settings import WeChatSettings
from web.channels import ChannelSpec

CHANNEL = ChannelSpec(
    kind=WeChatConnector.kind,
    live_chat=False,
    connector=WeChatConnector,
    routes=(ROUTES,),
    admin_routes=(ADMIN_ROUTES,),
    settings=WeChatSettings,
    docs="connectors/wechat/README.md",
)
