"""``adbench data get``: fetch, resume, verify and extract, against a local HTTP server.

The server speaks HTTP Range (http.server's own handler does not) and records what it
was asked; IADBENCH_DOWNLOAD_MIRROR sends every dataset URL to it. The checksums are
computed here with hashlib from the bytes served, independently of the code under test.
"""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iadbench.api import DatasetSpec, Download
from iadbench.cli import main
from iadbench.errors import PluginError
from iadbench.plugins import get_registry

URL = "https://data.example.org/files/mini.tar.gz"


class Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: int | None = None  # the next answer stops after this many body bytes
        self.honour_range = True


def _handler(state: Server):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            rng = rng if state.honour_range else None
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            cut, state.cut_after = state.cut_after, None
            self.wfile.write(body[start:] if cut is None else body[start : start + cut])

    return Handler


@pytest.fixture
def server(monkeypatch):
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("IADBENCH_DOWNLOAD_MIRROR", f"http://127.0.0.1:{httpd.server_address[1]}")
    yield state
    httpd.shutdown()
    httpd.server_close()


def tar_gz(members: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """A .tar.gz of files, plus links {name: (tarfile type, target)}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buf.getvalue()


GOOD_TREE = {"mini/train/good/000.png": b"png-bytes-0", "mini/test/good/000.png": b"png-bytes-1"}


def register_mini(monkeypatch, archive: bytes, filename: str = "", strip: str = "mini", **record) -> Download:
    record = record or {"sha256": hashlib.sha256(archive).hexdigest()}
    download = Download(url=URL, filename=filename, licence="CC0 (test data)", strip=strip, **record)
    spec = DatasetSpec("mini", factory=dict, subdir="mini_root", description="a miniature", detect=lambda p: (p / "train").is_dir(), downloads=(download,))
    monkeypatch.setitem(get_registry().datasets, "mini", spec)
    return download


def adbench(capsys, *args) -> tuple[int, str, str]:
    try:
        main(["data", "get", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, " ".join(out.out.split()), out.err.strip()


def test_good_download_verifies_extracts_and_a_second_call_fetches_nothing(tmp_path, server, monkeypatch, capsys):
    archive = tar_gz(GOOD_TREE)
    register_mini(monkeypatch, archive)
    server.files["/files/mini.tar.gz"] = archive
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path / "data"))
    assert code == 0, err
    assert URL in out and hashlib.sha256(archive).hexdigest() in out and "CC0 (test data)" in out
    assert "mini.tar.gz: sha256 ok" in out
    assert (tmp_path / "data/mini_root/train/good/000.png").read_bytes() == b"png-bytes-0"
    assert (tmp_path / "data/mini_root/test/good/000.png").read_bytes() == b"png-bytes-1"
    assert not (tmp_path / "data/mini.tar.gz").exists() and not (tmp_path / "data/mini.tar.gz.part").exists()
    assert f"adbench run --dataset mini --data-root {tmp_path / 'data'}" in out
    assert server.requests == [("/files/mini.tar.gz", None)]

    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path / "data"))
    assert code == 0, err
    assert "already in place" in out and "nothing downloaded" in out
    assert len(server.requests) == 1  # nothing fetched the second time


def test_a_checksum_mismatch_is_refused_and_the_file_kept_aside(tmp_path, server, monkeypatch, capsys):
    register_mini(monkeypatch, tar_gz(GOOD_TREE))
    server.files["/files/mini.tar.gz"] = tar_gz({"mini/train/good/000.png": b"other bytes"})
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path))
    assert code == 1
    assert len(err.splitlines()) == 1 and "mini.tar.gz: checksum mismatch (sha256" in err
    assert (tmp_path / "mini.tar.gz.corrupt").is_file()
    assert not (tmp_path / "mini.tar.gz").exists() and not (tmp_path / "mini_root").exists()


def test_a_record_with_only_an_md5_is_verified_by_md5_and_a_size_on_record_is_checked(tmp_path, server, monkeypatch, capsys):
    archive = tar_gz(GOOD_TREE)
    server.files["/files/mini.tar.gz"] = archive
    register_mini(monkeypatch, archive, md5=hashlib.md5(archive).hexdigest(), size_bytes=len(archive))
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path / "a"))
    assert code == 0, err
    assert f"md5 {hashlib.md5(archive).hexdigest()}" in out and "mini.tar.gz: md5 ok" in out
    register_mini(monkeypatch, archive, md5="0" * 32)
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path / "b"))
    assert code == 1 and f"checksum mismatch (md5 {hashlib.md5(archive).hexdigest()}, expected {'0' * 32})" in err
    register_mini(monkeypatch, archive, sha256=hashlib.sha256(archive).hexdigest(), size_bytes=len(archive) + 1)
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path / "c"))
    assert code == 1 and f"size mismatch ({len(archive)} bytes, expected {len(archive) + 1})" in err


def test_an_interrupted_download_resumes_from_its_part_file_with_a_range_request(tmp_path, server, monkeypatch, capsys):
    archive = tar_gz(GOOD_TREE) + b"\0" * 4096  # a tar.gz with trailing padding: long enough to cut
    register_mini(monkeypatch, archive)
    server.files["/files/mini.tar.gz"] = archive
    server.cut_after = 1000
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path))
    assert code == 1 and "interrupted at 1000 of" in err and "run again to resume" in err
    assert (tmp_path / "mini.tar.gz.part").stat().st_size == 1000

    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path))
    assert code == 0, err
    assert server.requests[-1] == ("/files/mini.tar.gz", "bytes=1000-")
    assert "resuming mini.tar.gz at 1000 bytes" in out
    assert (tmp_path / "mini_root/train/good/000.png").read_bytes() == b"png-bytes-0"


def test_a_whole_part_file_is_answered_416_and_still_verified(tmp_path, server, monkeypatch, capsys):
    archive = tar_gz(GOOD_TREE)
    register_mini(monkeypatch, archive)
    server.files["/files/mini.tar.gz"] = archive
    (tmp_path / "mini.tar.gz.part").write_bytes(archive)
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path))
    assert code == 0, err
    assert server.requests == [("/files/mini.tar.gz", f"bytes={len(archive)}-")]
    assert (tmp_path / "mini_root/train/good/000.png").is_file()


def test_a_server_that_ignores_range_gets_the_download_started_over(tmp_path, server, monkeypatch, capsys):
    archive = tar_gz(GOOD_TREE)
    register_mini(monkeypatch, archive)
    server.files["/files/mini.tar.gz"] = archive
    server.honour_range = False
    (tmp_path / "mini.tar.gz.part").write_bytes(b"stale bytes from some other file")
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path))
    assert code == 0, err
    assert server.requests == [("/files/mini.tar.gz", "bytes=32-")]  # asked to resume, sent it whole: written afresh
    assert (tmp_path / "mini_root/train/good/000.png").is_file()


def zip_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buf.getvalue()


ESCAPES = {
    "dotdot": ("mini.tar.gz", lambda: tar_gz({**GOOD_TREE, "mini/../../evil.txt": b"x"}), "mini/../../evil.txt"),
    "absolute": ("mini.tar.gz", lambda: tar_gz({**GOOD_TREE, "/tmp/evil.txt": b"x"}), "/tmp/evil.txt"),
    "symlink_out": ("mini.tar.gz", lambda: tar_gz(GOOD_TREE, {"mini/link": (tarfile.SYMTYPE, "../../..")}), "mini/link"),
    "symlink_absolute": ("mini.tar.gz", lambda: tar_gz(GOOD_TREE, {"mini/etc": (tarfile.SYMTYPE, "/etc")}), "mini/etc"),
    "hardlink_out": ("mini.tar.gz", lambda: tar_gz(GOOD_TREE, {"mini/hard": (tarfile.LNKTYPE, "../../outside.txt")}), "mini/hard"),
    "zip_dotdot": ("mini.zip", lambda: zip_bytes({**GOOD_TREE, "../evil.txt": b"x"}), "../evil.txt"),
    "zip_symlink_out": ("mini.zip", lambda: zip_bytes(GOOD_TREE, {"mini/link": "../../../etc"}), "mini/link"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_a_member_leaving_the_folder_is_refused_and_nothing_is_written(tmp_path, monkeypatch, capsys, case):
    filename, build, member = ESCAPES[case]
    archive = build()
    to = tmp_path / "deep" / "data"
    to.mkdir(parents=True)
    (to / filename).write_bytes(archive)  # placed by hand: data get verifies and extracts it
    register_mini(monkeypatch, archive, filename=filename)
    before = sorted(p for p in tmp_path.rglob("*"))
    code, out, err = adbench(capsys, "mini", "--to", str(to))
    assert code == 1
    assert len(err.splitlines()) == 1 and f"refused member '{member}'" in err, err
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing extracted, in or out of the folder


def test_offline_names_the_url_to_fetch_by_hand_and_where_to_put_it(tmp_path, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    monkeypatch.setenv("IADBENCH_DOWNLOAD_MIRROR", f"http://127.0.0.1:{port}/mirror")
    register_mini(monkeypatch, tar_gz(GOOD_TREE))
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path))
    assert code == 1
    assert len(err.splitlines()) == 1, err
    err = " ".join(err.split())
    assert f"cannot reach http://127.0.0.1:{port}/mirror/files/mini.tar.gz (" in err
    assert f"fetch it by hand, put it at {tmp_path / 'mini.tar.gz'} and run this command again" in err
    assert not (tmp_path / "mini_root").exists()


def test_unknown_names_exit_2_with_the_known_ones_and_no_name_lists_them(tmp_path, monkeypatch, capsys):
    code, out, err = adbench(capsys, "nosuch", "--to", str(tmp_path))
    assert code == 2
    assert "no dataset 'nosuch' to fetch" in err and "mvtec" in err and "visa" in err
    code, out, err = adbench(capsys, "factory", "--to", str(tmp_path))  # registered, nothing to fetch
    assert code == 2 and "no dataset 'factory' to fetch" in err
    monkeypatch.delenv("IADBENCH_DATA_ROOT", raising=False)
    code, out, err = adbench(capsys, "visa")
    assert code == 2 and "data get needs --to DIR" in err
    from iadbench.cli.app import console

    monkeypatch.setattr(console, "width", 240)  # a table narrower than its file names cuts them with an ellipsis
    code, out, err = adbench(capsys)
    assert code == 0
    assert "mvtec_anomaly_detection.tar.xz" in out and "VisA_20220922.tar" in out and "KolektorSDD2.zip" in out


def test_real_records_reach_their_urls_through_the_mirror_and_are_checked(tmp_path, server, capsys):
    # VisA's record (from anomalib) against a fake archive: the SHA-256 on record refuses it.
    server.files["/VisA_20220922.tar"] = b"not the VisA archive"
    code, out, err = adbench(capsys, "visa", "--to", str(tmp_path))
    assert code == 1 and "VisA_20220922.tar: checksum mismatch" in err
    assert "2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362" in out
    assert "https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar" in out


def test_a_manual_download_says_where_to_put_the_file_then_extracts_it(tmp_path, capsys):
    code, out, err = adbench(capsys, "ksdd2", "--to", str(tmp_path))
    assert code == 1
    assert "https://www.vicos.si/resources/kolektorsdd2/" in err and str(tmp_path / "KolektorSDD2.zip") in " ".join(err.split())
    png = _png()
    (tmp_path / "KolektorSDD2.zip").write_bytes(zip_bytes({
        "train/10000.png": png, "train/10000_GT.png": png, "test/20000.png": png, "test/20000_GT.png": png,
    }))
    code, out, err = adbench(capsys, "ksdd2", "--to", str(tmp_path), "--keep-archive")
    assert code == 0, err
    assert "no published checksum, not verified" in out
    assert (tmp_path / "ksdd2/train/10000_GT.png").is_file() and (tmp_path / "KolektorSDD2.zip").is_file()
    assert f"--data-root {tmp_path}" in out


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_checksum_on_record_must_be_hex_of_the_right_length():
    with pytest.raises(PluginError, match="sha256 'abc' is not 64 hex digits"):
        Download(url=URL, sha256="abc")
    with pytest.raises(PluginError, match="md5"):
        Download(url=URL, md5="z" * 32)


def test_the_mirror_must_be_an_http_url(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IADBENCH_DOWNLOAD_MIRROR", "ftp://mirror")
    register_mini(monkeypatch, tar_gz(GOOD_TREE))
    code, out, err = adbench(capsys, "mini", "--to", str(tmp_path))
    assert code == 1 and "IADBENCH_DOWNLOAD_MIRROR='ftp://mirror' is not an http(s)://host[/path] URL" in err
    assert not Path(tmp_path / "mini_root").exists()
