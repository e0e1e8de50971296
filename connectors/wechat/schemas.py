"""The WeChat admin API's request bodies (strict, like every body: web.schemas) and answers, and the
query strings of the platform's calls."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from web.api import QueryParam
from web.schemas import Out, Strict

WeChatKind = Literal["oa", "kf"]
WeChatMode = Literal["plain", "compat", "safe"]


class CreateWeChatAccountBody(Strict):
    kind: WeChatKind = "oa"
    name: str = Field(min_length=1, max_length=200)
    # Official Account: its AppID. WeCom kf: the corp id (corp_id is accepted as a synonym).
    app_id: str | None = Field(default=None, min_length=4, max_length=64)
    corp_id: str | None = Field(default=None, min_length=4, max_length=64)
    secret: str = Field(min_length=1, max_length=256)
    token: str = Field(min_length=3, max_length=32)
    aes_key: str | None = Field(default=None, min_length=43, max_length=43)
    mode: WeChatMode = "plain"
    open_kfid: str | None = Field(default=None, min_length=4, max_length=64)

    @model_validator(mode="after")
    def _one_id(self) -> CreateWeChatAccountBody:
        if self.app_id and self.corp_id and self.app_id != self.corp_id:
            raise ValueError("give app_id or corp_id, not both")
        if not (self.app_id or self.corp_id):
            raise ValueError("app_id (Official Account) or corp_id (WeCom kf) is required")
        return self


class UpdateWeChatAccountBody(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    app_id: str | None = Field(default=None, min_length=4, max_length=64)
    corp_id: str | None = Field(default=None, min_length=4, max_length=64)
    secret: str | None = Field(default=None, min_length=1, max_length=256)
    token: str | None = Field(default=None, min_length=3, max_length=32)
    aes_key: str | None = Field(default=None, min_length=43, max_length=43)
    mode: WeChatMode | None = None
    open_kfid: str | None = Field(default=None, min_length=4, max_length=64)
    active: bool | None = None


# --- answers (described in OpenAPI, see web.api; the handlers write store.account_dict) --------
class WeChatAccount(Out):
    id: int
    key: str = Field(description="The account's part of its web-hook URL")
    kind: WeChatKind
    name: str
    app_id: str
    open_kfid: str | None
    mode: WeChatMode
    active: bool
    secret: str | None = Field(description="Masked: its last 4 characters at most")
    token: str | None = Field(description="Masked")
    aes_key: str | None = Field(description="Masked")
    webhook_url: str = Field(description="The server URL to paste into the WeChat (or WeCom) console")
    created_at: datetime
    updated_at: datetime


class WeChatAccountEnvelope(Out):
    account: WeChatAccount


class WeChatAccountsEnvelope(Out):
    accounts: list[WeChatAccount]


# The platform's query strings: signed pushes and URL checks (a missing one is 403 invalid_signature).
def _signed(*names: str, optional: tuple[str, ...] = ()) -> tuple[QueryParam, ...]:
    return (*(QueryParam(n, {"type": "string"}, required=True) for n in names),
            *(QueryParam(n, {"type": "string"}) for n in optional))


OA_VERIFY_QUERY = _signed("signature", "timestamp", "nonce", optional=("echostr",))
OA_PUSH_QUERY = _signed("signature", "timestamp", "nonce", optional=("encrypt_type", "msg_signature", "openid"))
KF_VERIFY_QUERY = _signed("msg_signature", "timestamp", "nonce", "echostr")
KF_PUSH_QUERY = _signed("msg_signature", "timestamp", "nonce")
