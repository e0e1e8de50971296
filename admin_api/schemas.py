"""Request bodies. Unknown fields are refused, so a typo is an error and not a silent no-op."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

StatusName = Literal["new", "open", "pending", "solved", "closed"]
PriorityName = Literal["low", "normal", "high", "urgent"]
RoleName = Literal["admin", "supervisor", "agent"]
Tag = str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class LoginBody(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class MessageBody(Strict):
    text: str = Field(min_length=1)
    kind: Literal["reply", "note"] = "reply"


class NewCustomer(Strict):
    name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None


class CreateTicketBody(Strict):
    text: str = Field(min_length=1)
    subject: str | None = Field(default=None, max_length=500)
    customer_id: int | None = Field(default=None, gt=0)
    customer: NewCustomer | None = None
    channel: str | None = Field(default=None, max_length=40)
    assignee_id: int | None = Field(default=None, gt=0)
    group_id: int | None = Field(default=None, gt=0)
    priority: PriorityName = "normal"
    tags: list[Tag] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def one_customer(self) -> CreateTicketBody:
        if (self.customer_id is None) == (self.customer is None):
            raise ValueError("give exactly one of customer_id or customer")
        return self


class TransferBody(Strict):
    agent_id: int | None = Field(default=None, gt=0)
    group_id: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def one_target(self) -> TransferBody:
        if (self.agent_id is None) == (self.group_id is None):
            raise ValueError("give exactly one of agent_id or group_id")
        return self


class UpdateTicketBody(Strict):
    status: StatusName | None = None
    priority: PriorityName | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=500)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    add_tags: list[Tag] | None = Field(default=None, max_length=50)
    remove_tags: list[Tag] | None = Field(default=None, max_length=50)


class CreateAgentBody(Strict):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=1024)
    role: RoleName = "agent"
    capacity: int = Field(default=5, ge=0, le=1000)
    group_ids: list[int] = Field(default_factory=list, max_length=100)


class CreateGroupBody(Strict):
    name: str = Field(min_length=1, max_length=200)


class PresenceBody(Strict):
    status: Literal["online", "away", "offline"]


# --- WeChat accounts ----------------------------------------------------------------------------
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
