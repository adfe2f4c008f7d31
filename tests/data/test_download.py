import hashlib

import pytest

from bench.data.base import DataError
from bench.data.download import Source, cache_key, ensure, load_verified


def _src(server, body: bytes, name="blob.bin", md5=True, path="/blob.bin"):
    server.files[path] = body
    return Source(name=name, url=server.url(path), md5=hashlib.md5(body).hexdigest() if md5 else None)


def test_downloads_verifies_caches_and_reuses(server, tmp_path):
    body = b"x" * 5000
    src = _src(server, body)
    loc = ensure("blob", [src], tmp_path, "sub")
    assert loc.downloaded and loc.path == tmp_path / "sub" / "blob.bin"
    assert loc.path.read_bytes() == body
    assert (tmp_path / "sub" / "blob.bin.sha256").exists()
    again = ensure("blob", [src], tmp_path, "sub")
    assert not again.downloaded and again.status == "md5 ok"
    assert server.hits["/blob.bin"] == 1
    assert not list((tmp_path / "sub").glob(".*part"))


def test_checksum_mismatch_on_download_keeps_nothing(server, tmp_path):
    server.files["/blob.bin"] = b"tampered"
    src = Source(name="blob.bin", url=server.url("/blob.bin"), md5="0" * 32)
    with pytest.raises(DataError, match="md5 expected 0{32}"):
        ensure("blob", [src], tmp_path, None)
    assert not (tmp_path / "blob.bin").exists()


def test_truncated_download_is_rejected(server, tmp_path):
    src = _src(server, b"y" * 100_000, md5=False)
    server.truncate.add("/blob.bin")
    with pytest.raises(DataError, match="blob"):
        ensure("blob", [src], tmp_path, None)
    assert not list(tmp_path.iterdir())


def test_corrupt_cached_file_is_refetched(server, tmp_path):
    body = bytes(range(256)) * 40
    src = _src(server, body)
    loc = ensure("blob", [src], tmp_path, None)
    loc.path.write_bytes(body[:100])  # truncated on disk after the download
    loc = ensure("blob", [src], tmp_path, None)
    assert loc.downloaded and loc.path.read_bytes() == body
    assert server.hits["/blob.bin"] == 2
    assert (tmp_path / "blob.bin.corrupt").exists()


def test_corrupt_file_without_published_checksum_detected_by_record(server, tmp_path):
    body = b"a,b\n1,2\n" * 100
    src = _src(server, body, md5=False)
    loc = ensure("blob", [src], tmp_path, None)
    assert loc.status == "downloaded"
    loc.path.write_bytes(body + b"garbage")
    loc = ensure("blob", [src], tmp_path, None)
    assert loc.downloaded and server.hits["/blob.bin"] == 2


def test_unverified_file_failing_to_parse_is_refetched_once(server, tmp_path):
    good = b"GOOD" * 10
    src = _src(server, good, md5=False)
    (tmp_path / "blob.bin").write_bytes(b"BAD")  # placed by hand, nothing vouches for it

    def parse(loc):
        if not loc.path.read_bytes().startswith(b"GOOD"):
            raise DataError(f"{loc.path}: not GOOD")
        return "ok"

    out, loc = load_verified("blob", [src], tmp_path, None, parse)
    assert out == "ok" and loc.downloaded and server.hits["/blob.bin"] == 1


def test_offline_and_absent_names_files_folder_and_url(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    srcs = [Source("data.csv"), Source("data.zip", url="https://example.org/data.zip")]
    with pytest.raises(DataError) as e:
        ensure("dataset 'x'", srcs, tmp_path, "x")
    msg = str(e.value)
    assert "'data.csv' or 'data.zip'" in msg and str(tmp_path / "x") in msg
    assert "https://example.org/data.zip" in msg and "BENCH_DATA_DIR" in msg


def test_unreachable_server_gives_the_same_message(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    srcs = [Source("data.zip", url="http://127.0.0.1:9/data.zip")]
    with pytest.raises(DataError, match="(?s)Expected 'data.zip'.*download failed"):
        ensure("x", srcs, tmp_path, None)


def test_hand_placed_file_is_used_and_bad_checksum_reported(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.bin").write_bytes(b"hello")
    good = Source("f.bin", md5=hashlib.md5(b"hello").hexdigest())
    assert ensure("f", [good], tmp_path, "sub").status == "md5 ok"
    bad = Source("f.bin", md5="1" * 32, url="https://example.org/f.bin")
    with pytest.raises(DataError, match=r"(?s)f\.bin: md5 mismatch: expected 1{32}.*corrupt"):
        ensure("f", [bad], tmp_path, "sub")


def test_cache_key_changes_with_any_setting():
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
