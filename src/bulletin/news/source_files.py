"""Local news sources read safely: only regular files, never more than the size limit, and no link
out of the folder being read (a symlink to /etc/passwd in a news folder is not news)."""

from __future__ import annotations

import os
import stat
from collections.abc import Container
from pathlib import Path

from bulletin.news.errors import SourceError

READ_CHUNK = 1 << 16


def read_source_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file; SourceError for a FIFO, a device, a folder or a file over ``max_bytes``.

    The file is opened without blocking (a FIFO with no writer would wait for ever) and checked
    on the open descriptor, then read in pieces up to the limit, so a file that grows while it is
    read cannot pass it either.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise SourceError(f"cannot read the file: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "rb", buffering=0) as stream:
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise SourceError("not a regular file (a FIFO, device, socket or folder): refused")
            if status.st_size > max_bytes:
                raise SourceError(
                    f"the file is {status.st_size / 1_000_000:.1f} MB, "
                    f"more than ingest.max_bytes ({max_bytes / 1_000_000:.1f} MB)"
                )
            os.set_blocking(descriptor, True)
            pieces: list[bytes] = []
            total = 0
            while piece := stream.read(min(READ_CHUNK, max_bytes + 1 - total)):
                pieces.append(piece)
                total += len(piece)
                if total > max_bytes:
                    raise SourceError(f"the file is larger than ingest.max_bytes ({max_bytes / 1_000_000:.1f} MB)")
        except OSError as exc:
            raise SourceError(f"cannot read the file: {exc.strerror or exc}") from None
    return b"".join(pieces)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.is_relative_to(folder)
    except ValueError:
        return False


def folder_news_files(folder: Path, suffixes: Container[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """News files under ``folder`` in name order, and the entries refused with the reason.

    Hidden files and folders are skipped. Links are followed only when they stay inside the
    folder; a link out of it, a FIFO, a device or a socket with a news suffix is refused.
    Linked folders are not walked (their target, when inside, is walked anyway), so a link
    loop cannot make the walk endless.
    """
    root = folder.resolve()
    files: list[Path] = []
    refused: list[tuple[Path, str]] = []
    for current, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        base = Path(current)
        for name in sorted(filenames) + [d for d in dirnames if (base / d).is_symlink()]:
            if name.startswith("."):
                continue
            path = base / name
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    if path.suffix.lower() in suffixes:
                        refused.append((path, "a broken or looping link: refused"))
                    continue
                if not _inside(target, root):
                    refused.append((path, f"a link to {target}, outside the folder {folder}: refused"))
                    continue
                if target.is_dir():
                    continue
            if path.suffix.lower() not in suffixes:
                continue
            try:
                mode = path.stat().st_mode
            except OSError as exc:
                refused.append((path, f"cannot read the file: {exc.strerror or exc}"))
                continue
            if stat.S_ISREG(mode):
                files.append(path)
            else:
                refused.append((path, "not a regular file (a FIFO, device or socket): refused"))
    files.sort()
    return files, refused
