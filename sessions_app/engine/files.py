"""Files in and out of a node's own root, streamed over exec connections.

The engine's archive API (what ``docker cp`` uses) sees the container's original root,
not the node's own disk that its shell has (see IN_NODE_ROOT), so every transfer is a
command run in the node's root with its stdin or stdout streamed over the exec's
hijacked connection: ``head``/``cat`` for a file, ``tar`` for a directory, ``cat >`` for
an upload. The chroot is the fence: ``..`` and symlinks, whoever made them, resolve
inside the node's root. Paths are passed to the scripts as arguments, never spliced in.

Each command runs on an :class:`~sessions_app.engine.exec_stream.ExecStream` (no thread
held while the bytes flow).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sessions_app.engine import EngineError
from sessions_app.engine.exec_stream import HEADER_MAX, ExecStream, open_exec

# The exit codes the scripts below use for "no such path" and "neither file nor dir".
EXIT_MISSING, EXIT_NOT_A_FILE, EXIT_IS_A_DIRECTORY = 3, 4, 5
# Where an upload is written before it is renamed into place (same directory, so the
# rename is atomic and a failed upload leaves no half file under the wanted name).
UPLOAD_PREFIX = ".pwd-upload-"


class PathNotFound(EngineError):
    """The path does not exist in the node (or its directory does not)."""


class NotAFile(EngineError):
    """The path is neither a regular file nor a directory (a device, a FIFO...)."""


class IsADirectory(EngineError):
    """An upload would replace a directory."""


class WriteFailed(EngineError):
    """The node refused to write a file (read-only, full disk, permissions)."""


# --- the scripts (POSIX sh, coreutils and tar: what every node image has) ------------------

# The shell's current directory: the cwd of the newest bash in PID 1's session (the login
# shell the terminal shows, or one the trainee started in it; a shell inside an inner
# container has a session of its own). /root, where the login shell starts, without one.
# Builtins only in the loop: one fork per process would cost more than the rest.
_SHELL_CWD = r"""
shell_cwd() {
    read -r s < /proc/1/stat; set -- ${s##*) }; want=$4; best=; newest=-1
    for d in /proc/[0-9]*; do
        read -r comm < "$d/comm" 2>/dev/null && [ "$comm" = bash ] || continue
        read -r s < "$d/stat" 2>/dev/null || continue
        set -- ${s##*) }
        [ "$4" = "$want" ] && [ "${20}" -gt "$newest" ] || continue
        newest=${20}; best=$d
    done
    c=; [ -n "$best" ] && c=$(readlink "$best/cwd" 2>/dev/null)
    [ -n "$c" ] && [ -d "$c" ] || c=/root
    printf '%s' "$c"
}
target() {
    case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$(shell_cwd)" "$1" ;; esac
}
"""

# $1: the path. Prints "<kind> <size>\n<resolved path>\0", then the bytes: the file, or
# a tar of the directory (its own filesystem only: no /proc, no inner engine's data).
_DOWNLOAD = (
    _SHELL_CWD
    + r"""
t=$(target "$1")
t=$(readlink -e -- "$t") || { echo "no such file or directory" >&2; exit 3; }
if [ -d "$t" ]; then kind=dir; size=0
elif [ -f "$t" ]; then kind=file; size=$(stat -c %s -- "$t") || exit 1
else echo "neither a file nor a directory" >&2; exit 4; fi
printf '%s %s\n%s\0' "$kind" "$size" "$t"
if [ $kind = file ]; then
    if [ "$size" -gt 0 ]; then exec head -c "$size" -- "$t"; fi
    exec cat -- "$t"
fi
if [ "$t" = / ]; then cd / && exec tar -cf - --one-file-system .; fi
cd "${t%/*}/" && exec tar -cf - --one-file-system "./${t##*/}"
"""
)

# $1: the path. Prints "dir\n<directory>\0" when it is one, else "file\n<path>\0" when
# its directory exists.
_UPLOAD_TARGET = (
    _SHELL_CWD
    + r"""
t=$(target "$1")
if [ -d "$t" ]; then d=$(readlink -e -- "$t") || exit 1; printf 'dir\n%s\0' "$d"; exit 0; fi
case $t in */) echo "no such directory" >&2; exit 3 ;; esac
p=$(readlink -e -- "${t%/*}/") && [ -d "$p" ] || { echo "no such directory" >&2; exit 3; }
printf 'file\n%s/%s\0' "${p%/}" "${t##*/}"
"""
)

_WRITE = 'umask 022; exec cat > "$1"'

# Pairs of (written, wanted): refuses to replace a directory before moving anything.
_COMMIT = r"""
n=0; for f in "$@"; do
    n=$((n+1)); [ $((n % 2)) = 0 ] || continue
    if [ -d "$f" ] && [ ! -L "$f" ]; then echo "$f is a directory" >&2; exit 5; fi
done
while [ $# -ge 2 ]; do mv -f -T -- "$1" "$2" || exit 1; shift 2; done
"""

_DISCARD = 'rm -f -- "$@"'


async def _script(container_id: str, script: str, *args: str) -> tuple[int | None, bytes, str]:
    """Run a script to its end: (exit code, stdout up to HEADER_MAX, stderr message)."""
    stream = await open_exec(container_id, ["sh", "-c", script, "sh", *args])
    try:
        out = await stream.read_all(HEADER_MAX)
        return await stream.exit_code(), out, stream.message
    finally:
        await stream.close()


def _failure(code: int | None, message: str, path: str) -> EngineError:
    if code == EXIT_MISSING:
        return PathNotFound(f"{path}: {message}")
    if code == EXIT_NOT_A_FILE:
        return NotAFile(f"{path}: {message}")
    if code == EXIT_IS_A_DIRECTORY:
        return IsADirectory(message)
    return EngineError(f"{path}: {message or f'the command in the node failed ({code})'}")


# --- downloads --------------------------------------------------------------------------------


@dataclass
class Download:
    """A file (``kind`` "file", ``size`` bytes) or a directory's tar (``kind`` "dir")
    on its way out of a node."""

    kind: str
    size: int
    path: str
    stream: ExecStream

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes, then the connection closed. EngineError after the last chunk
        when the command in the node failed half-way (the answer is then cut short)."""
        try:
            while data := await self.stream.read():
                yield data
            code = await self.stream.exit_code()
            # tar says 1 when a file changed while it was read: the archive is still whole.
            if code not in (0, 1) or (code == 1 and self.kind == "file"):
                raise EngineError(f"{self.path}: {self.stream.message or 'read failed'}")
        finally:
            await self.stream.close()


async def open_download(container_id: str, path: str) -> Download:
    """Resolve ``path`` in the node (absolute, or relative to the shell's current
    directory) and start sending it. Raises PathNotFound, NotAFile, NodeGone."""
    stream = await open_exec(container_id, ["sh", "-c", _DOWNLOAD, "sh", path])
    try:
        header = await stream.read_until_nul()
        if header is None:
            code = await stream.exit_code()
            raise _failure(code, stream.message, path)
        first, resolved = header.split(b"\n", 1)
        kind, size = first.decode().split(" ")
        return Download(kind, int(size), resolved.decode("utf-8", "surrogateescape"), stream)
    except BaseException:
        await stream.close()
        raise


# --- uploads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadTarget:
    """Where uploads go: into directory ``path`` (``is_dir``), or as the file ``path``."""

    is_dir: bool
    path: str


async def upload_target(container_id: str, path: str) -> UploadTarget:
    """Resolve where ``path`` puts uploaded files. Raises PathNotFound, NodeGone."""
    code, out, message = await _script(container_id, _UPLOAD_TARGET, path)
    if code != 0 or b"\0" not in out:
        raise _failure(code, message, path)
    kind, resolved = out.split(b"\0", 1)[0].split(b"\n", 1)
    return UploadTarget(kind == b"dir", resolved.decode("utf-8", "surrogateescape"))


def temporary_name(directory: str) -> str:
    """A fresh name in ``directory`` for a file being uploaded."""
    return f"{directory.rstrip('/')}/{UPLOAD_PREFIX}{secrets.token_hex(8)}"


async def open_write(container_id: str, path: str) -> ExecStream:
    """Start writing a new file ``path`` in the node from the stream's stdin."""
    return await open_exec(container_id, ["sh", "-c", _WRITE, "sh", path], stdin=True)


async def finish_write(stream: ExecStream, path: str) -> None:
    """End the file's input and wait for the node to have written it; WriteFailed."""
    try:
        await stream.close_stdin()
        await stream.read_all(0)
        code = await stream.exit_code()
    finally:
        await stream.close()
    if code != 0:
        raise WriteFailed(stream.message or f"could not write {path}")


async def commit(container_id: str, moves: list[tuple[str, str]]) -> None:
    """Rename each written file to its wanted path. Raises IsADirectory (nothing moved)
    or WriteFailed."""
    args = [part for move in moves for part in move]
    code, _, message = await _script(container_id, _COMMIT, *args)
    if code == EXIT_IS_A_DIRECTORY:
        raise IsADirectory(message)
    if code != 0:
        raise WriteFailed(message or "could not move the uploaded files into place")


async def discard(container_id: str, paths: list[str]) -> None:
    """Remove files written for an upload that did not complete."""
    if paths:
        await _script(container_id, _DISCARD, *paths)
