"""PWD uploads: a multipart form (sessions_app.files does it), or a ``url`` fetched from
an explicitly allowed host only (PWD_COMPAT_UPLOAD_HOSTS), never another: SSRF."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlsplit

import httpx
from django.conf import settings
from django.http import HttpRequest

from pwd_compat.cors import upload_host_allowed
from sessions_app import files, services
from sessions_app.engine import files as node_files
from sessions_app.errors import ApiError, BadRequest, PayloadTooLarge
from sessions_app.models import Session

FETCH_TIMEOUT = 30.0


async def from_form(session: Session, name: str, path: str, request: HttpRequest) -> None:
    """Every file of the form's ``file`` field into ``path``; 400 when not multipart."""
    try:
        await files.upload(session, name, path, request)
    except files.UnsupportedMediaType as exc:
        raise BadRequest(exc.message, "not_multipart") from None


def checked_url(url: str) -> tuple[str, str]:
    """The URL and the file name it gives (its last segment); BadRequest
    ``url_not_allowed`` unless it is http(s) on an allowed host."""
    try:
        parts = urlsplit(url)
        host, scheme = parts.hostname, parts.scheme
    except ValueError:
        host = scheme = None
    if not host or scheme not in {"http", "https"}:
        raise BadRequest("url must be an http or https URL.", "url_not_allowed")
    if not upload_host_allowed(host):
        raise BadRequest(
            f"Uploads are not fetched from {host}; see PWD_COMPAT_UPLOAD_HOSTS.", "url_not_allowed"
        )
    filename = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    return url, files.check_filename(filename)


async def _fetch(url: str) -> bytes:
    cap = settings.PWD_MAX_UPLOAD
    body = bytearray()
    async with (
        httpx.AsyncClient(follow_redirects=False, timeout=FETCH_TIMEOUT, trust_env=False) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            raise ApiError(
                f"Fetching the url answered {response.status_code}.", "fetch_failed", 502
            )
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > cap:
                raise PayloadTooLarge(f"The file is larger than PWD_MAX_UPLOAD ({cap} bytes).")
    return bytes(body)


async def from_url(session: Session, name: str, url: str, raw_path: str) -> None:
    """Download ``url`` into the directory ``path`` of the node, named as the URL ends."""
    url, filename = checked_url(url)
    path = files.check_path(raw_path)
    node = await services.running_node(session, name)
    try:
        data = await _fetch(url)
    except httpx.HTTPError as exc:
        raise ApiError(f"Fetching the url failed: {exc}.", "fetch_failed", 502) from None
    target = await services.on_node(node, node_files.upload_target(node.container_id, path))
    upload = files._Upload(
        node.container_id, target, asyncio.get_running_loop(), settings.PWD_MAX_UPLOAD
    )
    try:
        await upload.start(filename)
        await upload.write(data)
        await upload.end(len(data))
        moves = [(temp, final) for temp, final, _ in upload.written]
        await services.on_node(node, node_files.commit(node.container_id, moves))
    except BaseException:
        await asyncio.shield(upload.abandon())
        raise
