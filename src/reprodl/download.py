"""Fetching and unpacking the raw datasets of the full profile.

The pipeline's reproducibility rests on two promises made here:

* a file handed back by :func:`download_file` has exactly the expected md5, and
  no half-written or corrupt file is ever left under the expected name (a later
  run would otherwise trust it);
* a folder handed back by :func:`extract_archive` holds the complete content of
  the archive and nothing was written outside it, whatever the archive says.

Only the standard library (urllib, tarfile, zipfile) and tqdm are used, so the
download path adds no dependency to the project.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import secrets
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from email.message import Message
from pathlib import Path, PureWindowsPath

from tqdm import tqdm

__all__ = [
    "DownloadError",
    "UnsafeArchiveError",
    "file_md5",
    "download_file",
    "extract_archive",
]

_CHUNK = 1 << 20
_MD5_RE = re.compile(r"[0-9a-fA-F]{32}")
# Some dataset hosts answer 403 to urllib's default "Python-urllib/x.y" agent.
_USER_AGENT = "reprodl/0.1 (python urllib)"
_OFFLINE_HINT = (
    "The network looks unreachable: the full profile needs network access; "
    "to run offline use the embedded profile: dvc exp run -S data.profile=embedded "
    "(or set data.profile: embedded in params.yaml)"
)
_MARKER = ".extracted"


class DownloadError(RuntimeError):
    """A dataset file could not be obtained; the message lists every mirror and why it failed."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the extraction folder (path traversal)."""


class _BadTransfer(Exception):
    """The mirror answered, but what arrived is not the expected file (short or corrupt)."""


def file_md5(path: Path) -> str:
    """Hex md5 of a file, read in chunks so that multi-GB archives need no memory."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    name: str,
    mirrors: Sequence[str],
    md5: str,
    dest_dir: Path,
    *,
    timeout: float = 20.0,
    progress: bool = True,
) -> Path:
    """Make ``dest_dir/name`` exist with the given md5, downloading it if needed.

    Mirrors are tried in order, each once (``mirror.rstrip('/') + '/' + name``);
    ``timeout`` bounds the connection and every read, so a dead host fails fast
    instead of hanging a ``dvc repro``. The bytes go to a private temporary file
    in ``dest_dir`` and are renamed to ``name`` only after the md5 matched, so
    an interrupted or corrupt transfer (Ctrl-C included) never leaves a file
    that a later run could mistake for the real one. An existing file with the
    right md5 is returned without touching the network; one with a wrong md5 is
    replaced by a successful download and otherwise left as it was.

    Raises:
        ValueError: an argument is malformed (checked before any work).
        DownloadError: every mirror failed; the message names the file and each
            mirror with its reason, and says how to go offline when the failures
            all look like an unreachable network.
    """
    _validate_download_args(name, mirrors, md5, timeout)
    md5 = md5.lower()
    dest_dir = Path(dest_dir)
    target = dest_dir / name
    stale_md5 = None
    if target.is_file():
        stale_md5 = file_md5(target)
        if stale_md5 == md5:
            return target
    dest_dir.mkdir(parents=True, exist_ok=True)

    failures: list[tuple[str, str, bool]] = []  # (url, reason, network-level?)
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + urllib.parse.quote(name)
        try:
            _fetch(url, target, md5, timeout, progress)
        except Exception as exc:  # any failure of one mirror is a reason to try the next one
            failures.append((url, *_describe_failure(exc)))
        else:
            return target
    raise DownloadError(_failure_message(name, target, failures, stale_md5))


def _validate_download_args(name: str, mirrors: Sequence[str], md5: str, timeout: float) -> None:
    if not isinstance(name, str) or not name or name in {".", ".."} or re.search(r"[/\\]", name):
        raise ValueError(f"name must be a plain file name (no folders), got {name!r}")
    if isinstance(mirrors, str):
        raise ValueError(
            f"mirrors must be a sequence of base URLs, not a single string: {mirrors!r}"
        )
    if not mirrors:
        raise ValueError(f"mirrors must list at least one base URL for {name!r}")
    if not all(isinstance(m, str) and m.strip() for m in mirrors):
        raise ValueError(f"mirrors must all be non-empty strings, got {list(mirrors)!r}")
    if not isinstance(md5, str) or not _MD5_RE.fullmatch(md5):
        raise ValueError(f"md5 must be 32 hexadecimal characters, got {md5!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


def _describe_failure(exc: Exception) -> tuple[str, bool]:
    """A readable reason for a failed attempt, and whether it looks like no network at all."""
    if isinstance(exc, urllib.error.HTTPError):  # the server answered, so the network works
        exc.close()
        return f"HTTP {exc.code} {exc.reason}", False
    if isinstance(exc, urllib.error.URLError):
        # DNS failures, refused connections, timeouts and unreachable networks all arrive
        # as OSError reasons; a missing file:// path is an OSError too but not a network issue.
        network = isinstance(exc.reason, OSError) and not isinstance(exc.reason, FileNotFoundError)
        return f"cannot connect: {exc.reason}", network
    if isinstance(exc, (TimeoutError, ConnectionError)):  # raised while reading the body
        return f"connection failed: {exc!r}", True
    return str(exc) or repr(exc), False


def _fetch(url: str, target: Path, md5: str, timeout: float, progress: bool) -> None:
    """One attempt at one mirror; raises on any failure and never leaves the temporary file."""
    tmp = target.with_name(f"{target.name}.part-{secrets.token_hex(6)}")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.md5()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "xb") as out:
            expected_size = _content_length(response.headers)
            with tqdm(
                total=expected_size,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=target.name,
                disable=None if progress else True,  # None: only on a terminal
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if expected_size is not None and received != expected_size:
            raise _BadTransfer(
                f"incomplete transfer: got {received} of {expected_size} bytes"
            )
        actual = digest.hexdigest()
        if actual != md5:
            raise _BadTransfer(
                f"checksum mismatch: expected md5 {md5}, got {actual} ({received} bytes)"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _content_length(headers: Message) -> int | None:
    value = headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _failure_message(
    name: str, target: Path, failures: list[tuple[str, str, bool]], stale_md5: str | None
) -> str:
    lines = [f"could not download {name!r} to {target.parent}; every mirror failed:"]
    lines += [f"  - {url}: {reason}" for url, reason, _ in failures]
    if stale_md5 is not None:
        lines.append(
            f"(the existing {target} has md5 {stale_md5}, not the expected one; "
            "it was left as it was)"
        )
    if all(network for _, _, network in failures):
        lines.append(_OFFLINE_HINT)
    return "\n".join(lines)


def extract_archive(archive: Path, dest_dir: Path) -> Path:
    """Unpack a .tar, .tar.gz/.tgz, .tar.bz2 or .zip archive into ``dest_dir``.

    Every member is vetted before anything is written: absolute paths, ``..``
    components and links leading outside ``dest_dir`` raise
    :class:`UnsafeArchiveError`, because a downloaded archive is untrusted input.
    Tar extraction also runs under tarfile's ``'data'`` filter as a second line
    of defence (it resolves link chains that a name check cannot see).

    Extraction happens in a hidden sibling folder that is renamed into place
    only when complete, with a ``.extracted`` marker holding the archive's md5;
    so an interrupted or refused extraction leaves no half-filled ``dest_dir``,
    and a rerun skips the work only when the marker proves ``dest_dir`` came
    from this very archive.

    Returns ``dest_dir``.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir)
    kind = _archive_kind(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    if dest_dir.exists() and not dest_dir.is_dir():
        raise NotADirectoryError(f"cannot extract {archive} into {dest_dir}: it is not a folder")
    digest = file_md5(archive)
    marker = dest_dir / _MARKER
    if marker.is_file() and marker.read_text().strip() == digest:
        return dest_dir

    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            _check_zip_members(archive, zf)
            _extract_atomically(archive, dest_dir, digest, zf.extractall)
    else:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _check_tar_members(archive, members)
            _extract_atomically(
                archive,
                dest_dir,
                digest,
                lambda tmp: tf.extractall(tmp, members=members, filter="data"),
            )
    return dest_dir


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2")):
        return "tar"
    raise ValueError(
        f"unsupported archive type {archive.name!r}: "
        "expected .tar, .tar.gz, .tgz, .tar.bz2 or .zip"
    )


def _unsafe_path_reason(path: str) -> str | None:
    """Why a member path (relative to the extraction folder) could escape it, or None."""
    if not path:
        return "has an empty name"
    if path.startswith(("/", "\\")) or PureWindowsPath(path).drive:
        return "has an absolute path"
    if ".." in re.split(r"[/\\]", path):
        return "has a '..' component"
    return None


def _unsafe_symlink_reason(member: str, link_target: str) -> str | None:
    """Why a symlink stored at ``member`` and pointing to ``link_target`` could escape, or None."""
    if link_target.startswith(("/", "\\")) or PureWindowsPath(link_target).drive:
        return f"is a symlink to the absolute path {link_target!r}"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member), link_target))
    if resolved == ".." or resolved.startswith("../"):
        return f"is a symlink pointing outside the folder ({link_target!r})"
    return None


def _refuse(archive: Path, member: str, reason: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"refusing to extract {archive}: member {member!r} {reason}; "
        "the destination was left untouched"
    )


def _check_tar_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    for member in members:
        reason = _unsafe_path_reason(member.name)
        if reason is None and member.issym():
            reason = _unsafe_symlink_reason(member.name, member.linkname)
        elif reason is None and member.islnk():
            link_reason = _unsafe_path_reason(member.linkname)
            if link_reason:
                reason = f"is a hard link whose target {member.linkname!r} {link_reason}"
        elif reason is None and not (member.isfile() or member.isdir()):
            reason = "is a device or fifo, which a dataset has no use for"
        if reason:
            raise _refuse(archive, member.name, reason)


def _check_zip_members(archive: Path, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        reason = _unsafe_path_reason(info.filename)
        if reason is None and stat.S_ISLNK(info.external_attr >> 16):
            # zipfile writes a link as a small file holding its target; vet it all the same.
            link_target = zf.read(info).decode("utf-8", "surrogateescape")
            reason = _unsafe_symlink_reason(info.filename, link_target)
        if reason:
            raise _refuse(archive, info.filename, reason)


def _extract_atomically(
    archive: Path, dest_dir: Path, digest: str, extract: Callable[[Path], None]
) -> None:
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir.with_name(f".{dest_dir.name}.extracting-{secrets.token_hex(6)}")
    tmp.mkdir()
    try:
        try:
            extract(tmp)
        except tarfile.FilterError as exc:
            reason = f"was refused by the tar 'data' filter: {exc}"
            raise _refuse(archive, exc.tarinfo.name, reason) from exc
        (tmp / _MARKER).write_text(digest + "\n")
        if dest_dir.exists():
            # A folder cannot be atomically replaced by another: move the old one aside first.
            old = dest_dir.with_name(f".{dest_dir.name}.old-{secrets.token_hex(6)}")
            os.replace(dest_dir, old)
            os.replace(tmp, dest_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
