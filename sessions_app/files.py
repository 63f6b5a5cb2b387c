"""Files in and out of a node: checks what the client sends, streams it to the engine.

Downloads are an async iterator over the node's output (a file, or a directory's tar),
so the server holds one chunk at a time. An upload's body is on disk by the time the
view runs (daphne's and Django's spools); Django's multipart parser reads it on a worker
thread, and each file's chunks go straight into a command writing it in the node (no
third copy on the server). Each file is written under a temporary name and moved into
place only once every file of the request has arrived, so a refused upload (a bad name,
over PWD_MAX_UPLOAD) leaves the node as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.utils.http import content_disposition_header

from sessions_app import engine, services
from sessions_app.engine import files as node_files
from sessions_app.engine.exec_stream import ExecStream, StdinClosed
from sessions_app.errors import ApiError, BadRequest, Conflict, NotFound, PayloadTooLarge
from sessions_app.models import Node, Session

log = logging.getLogger(__name__)

FIELD = "file"
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
# Bytes handed from the parser's thread to the node at once (the parser itself reads
# 64 KiB at a time: with larger chunks Django's boundary search gets much slower).
CHUNK = 1 << 20
T = TypeVar("T")


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


def check_path(raw: str | None) -> str:
    """The path as given (empty: the shell's current directory); BadRequest otherwise."""
    path = raw or ""
    if "\0" in path or len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadRequest(
            f"A path has no NUL character and at most {MAX_PATH_BYTES} bytes.", "bad_path"
        )
    return path


def check_filename(name: str) -> str:
    """A file name from the client, used as it is or refused: never cleaned up."""
    problem = None
    if name in {"", ".", ".."}:
        problem = "is empty, . or .."
    elif "/" in name or "\\" in name:
        problem = "has a slash or a backslash in it"
    elif any(ord(char) < 32 or ord(char) == 127 for char in name):
        problem = "has a control character in it"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise BadRequest(f"The file name {name[:80]!r} {problem}.", "bad_filename")
    return name


def _engine_error(exc: engine.EngineError, path: str) -> Exception:
    """The API's answer for what the node said about ``path``."""
    if isinstance(exc, node_files.PathNotFound):
        return NotFound(f"The node has no {path or 'current directory'}.", "path_not_found")
    if isinstance(exc, node_files.NotAFile):
        return Conflict(f"{path} is neither a file nor a directory.", "not_a_file")
    if isinstance(exc, node_files.IsADirectory):
        return Conflict(f"An upload would replace a directory: {exc}.", "is_a_directory")
    if isinstance(exc, node_files.WriteFailed | StdinClosed):
        return Conflict(f"The node could not write the file: {exc}.", "write_failed")
    return exc


async def _on(node: Node, path: str, call: Awaitable[T]) -> T:
    try:
        return await services.on_node(node, call)
    except engine.EngineError as exc:
        raise _engine_error(exc, path) from None


# --- downloads ------------------------------------------------------------------------------


@dataclass
class Outgoing:
    """A download, ready to stream: the headers and the body's chunks."""

    filename: str
    content_type: str
    size: int | None
    chunks: AsyncIterator[bytes]
    # Ends the command in the node when the chunks are not read (a HEAD request).
    close: Callable[[], Awaitable[None]]

    def headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": self.content_type,
            "Content-Disposition": content_disposition_header(True, self.filename) or "",
            "Cache-Control": "no-store",
        }
        if self.size is not None:
            headers["Content-Length"] = str(self.size)
        return headers


def _download_name(path: str, kind: str) -> str:
    """The name the browser saves under: the path's last part, control characters out."""
    base = path.rstrip("/").rsplit("/", 1)[-1] or "root"
    base = "".join("_" if ord(char) < 32 or ord(char) == 127 else char for char in base)
    return f"{base}.tar" if kind == "dir" else base


async def _coalesce(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """The engine's 32 KiB frames joined into ``size`` pieces: fewer ASGI messages."""
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        if len(pending) >= size:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


async def download(session: Session, name: str, raw_path: str | None) -> Outgoing:
    """Start sending ``raw_path`` (a file, or a directory as tar) from the node."""
    path = check_path(raw_path)
    node = await services.running_node(session, name)
    found = await _on(node, path, node_files.open_download(node.container_id, path))
    is_file = found.kind == "file"
    return Outgoing(
        filename=_download_name(found.path, found.kind),
        content_type="application/octet-stream" if is_file else "application/x-tar",
        size=found.size if is_file and found.size > 0 else None,
        chunks=_coalesce(found.chunks(), CHUNK // 4),
        close=found.stream.close,
    )


# --- uploads ---------------------------------------------------------------------------------


@dataclass
class _Upload:
    """One request's files on their way into a node, written from the parser's thread."""

    container_id: str
    target: node_files.UploadTarget
    loop: asyncio.AbstractEventLoop
    cap: int
    received: int = 0
    written: list[tuple[str, str, int]] = field(default_factory=list)  # (temp, final, size)
    stream: ExecStream | None = None
    temp: str = ""
    final: str = ""

    def call(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def start(self, filename: str) -> None:
        if self.target.is_dir:
            self.final = f"{self.target.path.rstrip('/')}/{filename}"
        elif self.written:
            raise Conflict(
                "Several files go into a directory; the path names a file.", "not_a_directory"
            )
        else:
            self.final = self.target.path
        self.temp = node_files.temporary_name(self.final.rsplit("/", 1)[0] or "/")
        self.stream = await node_files.open_write(self.container_id, self.temp)

    async def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.cap:
            raise PayloadTooLarge(f"The files are larger than PWD_MAX_UPLOAD ({self.cap} bytes).")
        assert self.stream is not None
        await self.stream.write(data)

    async def end(self, size: int) -> None:
        stream, self.stream = self.stream, None
        assert stream is not None
        self.written.append((self.temp, self.final, size))
        await node_files.finish_write(stream, self.final)

    async def abandon(self) -> None:
        """Close a file left half-written and remove every file written so far."""
        if self.stream is not None:
            await self.stream.close()
            self.stream = None
            self.written.append((self.temp, self.final, 0))
        temps = [temp for temp, _, _ in self.written]
        try:
            await node_files.discard(self.container_id, temps)
        except engine.EngineError:
            log.warning("could not remove %d half-uploaded files from a node", len(temps))


class _Written:
    """What the parser keeps for a file written into the node (it closes each on error)."""

    def close(self) -> None:
        pass


class _IntoNode(FileUploadHandler):
    """Django's upload handler that writes each file into the node as it is parsed."""

    def __init__(self, upload: _Upload) -> None:
        super().__init__()
        self.upload = upload
        self.pending = bytearray()

    def _flush(self) -> None:
        if self.pending:
            self.upload.call(self.upload.write(bytes(self.pending)))
            self.pending.clear()

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        if field_name != FIELD:
            raise BadRequest(f"Files go in the form field {FIELD!r}.", "invalid_request")
        super().new_file(field_name, file_name, *args, **kwargs)
        self.upload.call(self.upload.start(file_name))

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.pending += raw_data
        if len(self.pending) >= CHUNK:
            self._flush()

    def file_complete(self, file_size: int) -> _Written:
        self._flush()
        self.upload.call(self.upload.end(file_size))
        return _Written()


class _StrictParser(MultiPartParser):
    """Refuses a bad file name instead of Django's cleaning it into another name."""

    def sanitize_file_name(self, file_name: str) -> str:
        return check_filename(file_name)


def _parse(request: HttpRequest, upload: _Upload) -> int:
    try:
        _, files = _StrictParser(request.META, request, [_IntoNode(upload)]).parse()
    except (MultiPartParserError, TooManyFilesSent, TooManyFieldsSent, RequestDataTooBig) as exc:
        raise BadRequest(f"The multipart body is malformed: {exc}.", "invalid_request") from None
    return len(files.getlist(FIELD))


async def upload(
    session: Session, name: str, raw_path: str | None, request: HttpRequest
) -> list[dict[str, Any]]:
    """Write the request's files into the node; returns each one's path and size."""
    path = check_path(raw_path)
    if not request.content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            f"Send the files as multipart/form-data, in the field {FIELD!r}."
        )
    node = await services.running_node(session, name)
    target = await _on(node, path, node_files.upload_target(node.container_id, path))
    upload = _Upload(node.container_id, target, asyncio.get_running_loop(), settings.PWD_MAX_UPLOAD)
    try:
        parse = sync_to_async(_parse, thread_sensitive=False)
        count = await _on(node, path, parse(request, upload))
        if not count:
            raise BadRequest(f"The body has no file in the field {FIELD!r}.", "no_files")
        moves = [(temp, final) for temp, final, _ in upload.written]
        await _on(node, path, node_files.commit(node.container_id, moves))
    except BaseException:
        await asyncio.shield(upload.abandon())
        raise
    return [{"path": final, "size": size} for _, final, size in upload.written]
