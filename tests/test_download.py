"""Download and extraction against local HTTP servers and generated archives (no network needed)."""

from __future__ import annotations

import hashlib
import http.server
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import (
    EVIL_TAR_KINDS,
    EVIL_ZIP_KINDS,
    md5_of,
    serve,
    serve_directory,
    stalled_url,
    unreachable_url,
    write_evil_tar,
    write_evil_zip,
    write_tar,
    write_zip,
)

import reprodl.download as download
from reprodl.download import DownloadError, UnsafeArchiveError, download_file, extract_archive, file_md5

NAME = "payload.bin"
OFFLINE_ADVICE = "dvc exp run -S data.profile=embedded"


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, str]:
    """A mirror folder holding NAME (2.5 MB: several read chunks) and its md5."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / NAME).write_bytes(np.random.default_rng(0).bytes(2_500_000))
    return folder, md5_of(folder / NAME)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "dest"


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- file_md5 ---------------------------------------------------------------------------


def test_file_md5_matches_hashlib_across_chunks(mirror):
    folder, md5 = mirror
    assert file_md5(folder / NAME) == md5 == hashlib.md5((folder / NAME).read_bytes()).hexdigest()


# --- download_file ----------------------------------------------------------------------


def test_good_download_leaves_only_the_verified_file(mirror, dest):
    folder, md5 = mirror
    with serve_directory(folder) as url:
        path = download_file(NAME, [url], md5, dest, progress=False)
    assert path == dest / NAME
    assert file_md5(path) == md5
    assert listing(dest) == [NAME]  # no .part-* leftovers


def test_mirror_with_trailing_slash_and_uppercase_md5(mirror, dest):
    folder, md5 = mirror
    with serve_directory(folder) as url:
        path = download_file(NAME, [url + "/"], md5.upper(), dest, progress=False)
    assert file_md5(path) == md5


def test_present_file_is_not_downloaded_again(mirror, dest):
    folder, md5 = mirror
    with serve_directory(folder) as url:
        download_file(NAME, [url], md5, dest, progress=False)
    mtime = (dest / NAME).stat().st_mtime_ns
    # The server is gone: only the local check can succeed.
    path = download_file(NAME, [url, unreachable_url()], md5, dest, progress=False)
    assert path == dest / NAME
    assert path.stat().st_mtime_ns == mtime


def test_present_file_with_wrong_md5_is_replaced(mirror, dest):
    folder, md5 = mirror
    dest.mkdir()
    (dest / NAME).write_bytes(b"stale")
    with serve_directory(folder) as url:
        path = download_file(NAME, [url], md5, dest, progress=False)
    assert file_md5(path) == md5
    assert listing(dest) == [NAME]


def test_present_file_with_wrong_md5_is_kept_when_every_mirror_fails(mirror, dest):
    _, md5 = mirror
    dest.mkdir()
    (dest / NAME).write_bytes(b"stale")
    with pytest.raises(DownloadError) as err:
        download_file(NAME, [unreachable_url()], md5, dest, progress=False)
    assert (dest / NAME).read_bytes() == b"stale"
    assert hashlib.md5(b"stale").hexdigest() in str(err.value)


def test_checksum_mismatch_leaves_no_file(mirror, dest):
    folder, md5 = mirror
    wrong = "0" * 32
    with serve_directory(folder) as url:
        with pytest.raises(DownloadError) as err:
            download_file(NAME, [url], wrong, dest, progress=False)
    message = str(err.value)
    assert NAME in message and url in message
    assert f"expected md5 {wrong}" in message and md5 in message
    assert "network looks unreachable" not in message  # the server answered
    assert listing(dest) == []  # neither the final nor a partial file


def test_checksum_mismatch_then_good_mirror(mirror, dest, tmp_path):
    folder, md5 = mirror
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / NAME).write_bytes(b"not the payload")
    with serve_directory(corrupt) as bad_url, serve_directory(folder) as good_url:
        path = download_file(NAME, [bad_url, good_url], md5, dest, progress=False)
    assert file_md5(path) == md5
    assert listing(dest) == [NAME]


def test_unreachable_mirror_then_working_one(mirror, dest):
    folder, md5 = mirror
    with serve_directory(folder) as url:
        path = download_file(NAME, [unreachable_url(), url], md5, dest, progress=False)
    assert file_md5(path) == md5
    assert listing(dest) == [NAME]


def test_404_mirror_then_good_mirror(mirror, dest, tmp_path):
    folder, md5 = mirror
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve_directory(empty) as missing_url, serve_directory(folder) as url:
        path = download_file(NAME, [missing_url, url], md5, dest, progress=False)
    assert file_md5(path) == md5


def test_all_mirrors_unreachable_suggests_the_embedded_profile(mirror, dest):
    _, md5 = mirror
    urls = [unreachable_url(), unreachable_url()]
    with pytest.raises(DownloadError) as err:
        download_file(NAME, urls, md5, dest, progress=False)
    message = str(err.value)
    assert NAME in message
    assert all(f"{u}/{NAME}" in message for u in urls)
    assert "network looks unreachable" in message
    assert "full profile needs network access" in message
    assert OFFLINE_ADVICE in message and "data.profile: embedded" in message
    assert listing(dest) == []


def test_http_errors_do_not_blame_the_network(mirror, dest, tmp_path):
    _, md5 = mirror
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve_directory(empty) as url:
        with pytest.raises(DownloadError) as err:
            download_file(NAME, [unreachable_url(), url], md5, dest, progress=False)
    message = str(err.value)
    assert "HTTP 404" in message and "cannot connect" in message
    assert OFFLINE_ADVICE not in message


def test_stalled_mirror_times_out_fast(mirror, dest):
    _, md5 = mirror
    with stalled_url() as url:
        start = time.monotonic()
        with pytest.raises(DownloadError) as err:
            download_file(NAME, [url], md5, dest, timeout=0.3, progress=False)
        elapsed = time.monotonic() - start
    assert elapsed < 5
    assert "timed out" in str(err.value)
    assert OFFLINE_ADVICE in str(err.value)
    assert listing(dest) == []


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes, sends 10, hangs up: a connection dropped mid-transfer."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_truncated_transfer_is_reported_and_leaves_no_file(mirror, dest):
    _, md5 = mirror
    with serve(_TruncatingHandler) as url:
        with pytest.raises(DownloadError) as err:
            download_file(NAME, [url], md5, dest, progress=False)
    assert "got 10 of 1000 bytes" in str(err.value)
    assert listing(dest) == []


def test_interrupt_mid_download_leaves_no_partial_file(mirror, dest, monkeypatch):
    folder, md5 = mirror

    class InterruptingBar:
        """Stands in for tqdm and simulates Ctrl-C after the first chunk was written."""

        def __init__(self, **kwargs: object) -> None:
            pass

        def __enter__(self) -> "InterruptingBar":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: int) -> None:
            assert any(p.name.startswith(NAME + ".part-") for p in dest.iterdir())
            raise KeyboardInterrupt

    monkeypatch.setattr(download, "tqdm", InterruptingBar)
    with serve_directory(folder) as url:
        with pytest.raises(KeyboardInterrupt):  # propagates: not mistaken for a mirror failure
            download_file(NAME, [url, url], md5, dest, progress=False)
    assert listing(dest) == []


def test_local_file_mirror(mirror, dest, tmp_path):
    folder, md5 = mirror
    missing = (tmp_path / "nowhere").as_uri()
    path = download_file(NAME, [missing, folder.as_uri()], md5, dest, progress=False)
    assert file_md5(path) == md5
    with pytest.raises(DownloadError) as err:
        download_file("other.bin", [missing], md5, dest, progress=False)
    assert OFFLINE_ADVICE not in str(err.value)  # a missing local folder is no network problem


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"mirrors": []}, "mirrors"),
        ({"mirrors": "http://127.0.0.1:9/"}, "mirrors"),
        ({"mirrors": ["http://127.0.0.1:9/", ""]}, "mirrors"),
        ({"md5": "abc"}, "md5"),
        ({"md5": "g" * 32}, "md5"),
        ({"name": ""}, "name"),
        ({"name": "../evil.bin"}, "name"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_arguments_are_validated_before_any_work(dest, kwargs, argument):
    args = {"name": NAME, "mirrors": ["http://127.0.0.1:9/"], "md5": "0" * 32, "timeout": 1.0}
    args.update(kwargs)
    timeout = args.pop("timeout")
    with pytest.raises(ValueError, match=argument):
        download_file(dest_dir=dest, timeout=timeout, progress=False, **args)
    assert not dest.exists()


# --- extract_archive --------------------------------------------------------------------

GOOD_FILES = {"top/a.txt": b"alpha\n", "top/sub/b.bin": bytes(range(256))}


def assert_extracted(dest: Path, archive: Path) -> None:
    for member, data in GOOD_FILES.items():
        assert (dest / member).read_bytes() == data
    assert (dest / ".extracted").read_text().strip() == md5_of(archive)
    # no temporary or old sibling folders left next to dest
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted([dest.name, archive.name])


@pytest.mark.parametrize("name", ["good.tar", "good.tar.gz", "good.tgz", "good.tar.bz2", "good.zip"])
def test_extracts_every_supported_format(tmp_path, name):
    writer = write_zip if name.endswith(".zip") else write_tar
    writer(tmp_path, name, GOOD_FILES)
    dest = tmp_path / "out"
    assert extract_archive(tmp_path / name, dest) == dest
    assert_extracted(dest, tmp_path / name)


def test_marker_skips_repeated_extraction(tmp_path):
    write_tar(tmp_path, "good.tar", GOOD_FILES)
    dest = extract_archive(tmp_path / "good.tar", tmp_path / "out")
    (dest / "top" / "a.txt").write_bytes(b"edited")
    extract_archive(tmp_path / "good.tar", dest)
    assert (dest / "top" / "a.txt").read_bytes() == b"edited"  # untouched: the marker matched


def test_other_archive_or_missing_marker_means_reextraction(tmp_path):
    write_tar(tmp_path, "good.tar", GOOD_FILES)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "junk.txt").write_text("left by a crashed run")
    extract_archive(tmp_path / "good.tar", dest)
    assert not (dest / "junk.txt").exists()
    assert_extracted(dest, tmp_path / "good.tar")

    write_tar(tmp_path, "good.tar", {"top/a.txt": b"new"})  # same name, new content
    extract_archive(tmp_path / "good.tar", dest)
    assert (dest / "top" / "a.txt").read_bytes() == b"new"
    assert not (dest / "top" / "sub").exists()


def test_interrupted_extraction_keeps_previous_result(tmp_path, monkeypatch):
    write_tar(tmp_path, "first.tar", GOOD_FILES)
    dest = extract_archive(tmp_path / "first.tar", tmp_path / "out")
    write_tar(tmp_path, "second.tar", {"top/a.txt": b"second"})
    original = tarfile.TarFile.extractall

    def extract_one_then_interrupt(self, path, members=None, **kwargs):
        original(self, path, members=members[:1], **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", extract_one_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(tmp_path / "second.tar", dest)
    assert (dest / "top" / "a.txt").read_bytes() == b"alpha\n"
    assert (dest / ".extracted").read_text().strip() == md5_of(tmp_path / "first.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.tar", "out", "second.tar"]


def assert_refused(archive: Path, member: str) -> None:
    base = archive.parent
    before = sorted(str(p) for p in base.parent.rglob("*"))
    dest = base / "out"
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, dest)
    assert str(archive) in str(err.value) and member in str(err.value)
    assert isinstance(err.value, DownloadError)
    assert not dest.exists()
    assert sorted(str(p) for p in base.parent.rglob("*")) == before  # nothing written anywhere


@pytest.mark.parametrize("kind", EVIL_TAR_KINDS)
@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_escaping_tar_members_are_refused(tmp_path, kind, suffix):
    base = tmp_path / "work"
    base.mkdir()
    write_evil_tar(base, "evil" + suffix, kind)
    member = {
        "parent": "../escape.txt",
        "absolute": "/abs.txt",
        "symlink_absolute": "good/etc",
        "symlink_parent": "good/up",
        "symlink_chain": "out",
        "hardlink": "good/hard",
    }[kind]
    assert_refused(base / ("evil" + suffix), member)


@pytest.mark.parametrize("kind", EVIL_ZIP_KINDS)
def test_escaping_zip_members_are_refused(tmp_path, kind):
    base = tmp_path / "work"
    base.mkdir()
    write_evil_zip(base, "evil.zip", kind)
    member = {"parent": "../escape.txt", "absolute": "/abs.txt", "symlink": "good/etc"}[kind]
    assert_refused(base / "evil.zip", member)


def test_unsupported_or_missing_archives(tmp_path):
    (tmp_path / "data.rar").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported archive"):
        extract_archive(tmp_path / "data.rar", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        extract_archive(tmp_path / "missing.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_download_then_extract_reuses_both(tmp_path):
    """The full-profile sequence: the second run touches neither the network nor the files."""
    served = tmp_path / "served"
    served.mkdir()
    md5 = write_tar(served, "bundle.tar.gz", GOOD_FILES)
    raw = tmp_path / "raw"
    with serve_directory(served) as url:
        archive = download_file("bundle.tar.gz", [url], md5, raw, progress=False)
    dest = extract_archive(archive, raw / "bundle")
    stamp = os.stat(dest / ".extracted").st_mtime_ns
    archive = download_file("bundle.tar.gz", [unreachable_url()], md5, raw, progress=False)
    extract_archive(archive, raw / "bundle")
    assert os.stat(dest / ".extracted").st_mtime_ns == stamp
