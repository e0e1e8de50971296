"""Attachments: agents upload files for their messages; customers open them by a signed link."""

from __future__ import annotations

from aiohttp import web

from admin_api.responses import AttachmentEnvelope
from admin_api.schemas import UploadQuery
from core import attachments
from core.errors import DomainError
from web.api import RouteTable, WordId
from web.http import HUB, int_param, principal_of, read_file_body, tenant_of, word_param

ROUTES = RouteTable("attachments")

# A signature is 32 characters (core.secrets.sign); the path allows a little more, which then
# simply matches nothing.
MAX_SIGNATURE = 64


def _serve(file: attachments.File, cache: str) -> web.Response:
    return web.Response(body=file.data, content_type=file.content_type,
                        headers={**attachments.disposition(file), "Cache-Control": cache})


@ROUTES.route("POST", "/api/v1/attachments", raw_body=True, query=UploadQuery, response=AttachmentEnvelope,
           status=201, errors=(400,),
           summary="Upload a file to attach to messages: the body is the file, Content-Type its type, ?name= its name")
async def upload(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    name = attachments.check_name(request.query.get("name"))
    content_type = attachments.check_content_type(request.headers.get("Content-Type"))
    data = await read_file_body(request, hub.settings.max_attachment_bytes, code="attachment_too_large",
                                what="the file")
    if not data:
        raise DomainError("the file is empty: send its bytes as the request body", code="empty_attachment")
    stored = await attachments.store(hub, principal.tenant_id, principal.agent_id, name, content_type, data)
    return web.json_response({"attachment": stored}, status=201)


@ROUTES.route("GET", "/api/v1/attachments/{attachment_id}", summary="An uploaded file (signed in)", media_type="*/*")
async def download(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    file = await attachments.load(hub, principal.tenant_id, int_param(request, "attachment_id"))
    return _serve(file, "private, max-age=86400")


@ROUTES.route("GET", "/files/{attachment_id}/{signature}", auth=False, media_type="*/*",
           path_params={"signature": WordId(MAX_SIGNATURE)},
           summary="An attached file by the signed link a customer was given (no sign-in)")
async def public_download(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    attachment_id = int_param(request, "attachment_id")
    signature = word_param(request, "signature", max_length=MAX_SIGNATURE)
    file = await attachments.load_signed(hub, tenant_of(request).id, attachment_id, signature)
    # The link is the credential: keep it out of shared caches.
    return _serve(file, "private, max-age=86400")
