"""The files operations: upload into a node, download a file or a directory's tar.

Documented in docs/api.md ("Files") and at /api/schema/. The bodies are not JSON, so
the multipart request and the binary answers are described here by hand
(``openapi_extra``); :mod:`sessions_app.files` does the work.
"""

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import Query, Router, Schema, Status

from sessions_app import files, schemas, services

router = Router()

Error = schemas.Error
PATH = "/sessions/{session_id}/nodes/{name}/files/"
ON_NODE = {404: Error, 409: Error, 410: Error, 502: Error, 503: Error}
PATH_HELP = (
    "Absolute, or relative to the shell's current directory (the newest bash on the "
    "node's terminal); left out: that directory. `..` and symlinks resolve inside the node."
)


class Written(Schema):
    path: str
    size: int


class Uploaded(Schema):
    files: list[Written]


DOWNLOAD_PATH = Query(None, description=PATH_HELP)
UPLOAD_PATH = Query(
    None, description=f"A directory to put the files in, or (one file) its new path. {PATH_HELP}"
)

DOWNLOAD_DOC = {
    "responses": {
        "200": {
            "description": "The file (`application/octet-stream`, with Content-Length), "
            "or the directory as a tar archive (`application/x-tar`, `<name>.tar`), "
            "streamed; Content-Disposition names it.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
}

UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        files.FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                        }
                    },
                    "required": [files.FIELD],
                }
            }
        },
    },
}


@router.get(
    PATH,
    response={400: Error, **ON_NODE},
    operation_id="downloadFile",
    summary="Download a file, or a directory as a tar archive, from a node",
    openapi_extra=DOWNLOAD_DOC,
)
async def download(
    request: HttpRequest, session_id: str, name: str, path: str | None = DOWNLOAD_PATH
) -> HttpResponse:
    session = await services.active_session(session_id)
    outgoing = await files.download(session, name, path)
    if request.method == "HEAD":
        await outgoing.close()
        return HttpResponse(headers=outgoing.headers())
    return StreamingHttpResponse(outgoing.chunks, headers=outgoing.headers())


# HEAD: the headers a GET would have (after the same checks), nothing read in the node.
router.add_api_operation(PATH, ["HEAD"], download, include_in_schema=False)


@router.post(
    PATH,
    response={201: Uploaded, 400: Error, 403: Error, 413: Error, 415: Error, **ON_NODE},
    operation_id="uploadFiles",
    summary="Upload files into a node (multipart, field `file`, one or more)",
    openapi_extra=UPLOAD_DOC,
)
async def upload(
    request: HttpRequest, session_id: str, name: str, path: str | None = UPLOAD_PATH
) -> Status:
    session = await services.active_session(session_id)
    written = await files.upload(session, name, path, request)
    return Status(201, {"files": written})
