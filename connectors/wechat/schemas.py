"""The WeChat admin API's request bodies (strict, like every body: web.schemas)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from web.schemas import Strict

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
