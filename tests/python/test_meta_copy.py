"""`kura meta copy`: an embedded store's metadata moved into PostgreSQL, blob files left in place.

On the PostgreSQL pass the session server itself runs on such a copy (see conftest.server); these
tests check what was seeded before the copy, and the copy's resume and verification.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
import time

import oss2
import pytest

from conftest import AK, SK, ROOT, SEEDED_BUCKET, new_pg_database, seed_embedded_store, start_kura

needs_pg = pytest.mark.skipif(not os.environ.get("KURA_TEST_PG_URL"),
                              reason="needs PostgreSQL (scripts/test starts one)")
KURA = os.environ.get("KURA_BIN", os.path.join(ROOT, "target", "debug", "kura"))


def psql(url, query):
    out = subprocess.run([os.path.join(os.environ["KURA_TEST_PG_BIN"], "psql"), "-At", "-d", url, "-c", query],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


@needs_pg
def test_the_seeded_store_is_whole_after_the_copy(server):
    seeded = server.seeded
    bk = oss2.Bucket(oss2.Auth(AK, SK), server.endpoint, SEEDED_BUCKET)
    assert bk.get_bucket_acl().acl == oss2.BUCKET_ACL_PUBLIC_READ
    listed = {o.key for o in oss2.ObjectIterator(bk)}
    assert listed == set(seeded["objects"])
    for key, digest in seeded["objects"].items():
        r = bk.get_object(key)
        assert hashlib.md5(r.read()).hexdigest() == digest, key
        if key.startswith("dir"):
            assert r.headers["Content-Type"] == "text/x-seed"
            assert r.headers["x-oss-meta-n"] == str(int(key[-3:]))
    uploads = {u.key: u.upload_id for u in oss2.MultipartUploadIterator(bk)}
    assert uploads == {k: v[0] for k, v in seeded["uploads"].items()}
    # An upload begun before the copy is completed after it, another aborted.
    key = "open/one"
    up, datas, etags = seeded["uploads"][key]
    assert [(p.part_number, p.etag) for p in bk.list_parts(key, up).parts] == list(enumerate(etags, 1))
    bk.complete_multipart_upload(key, up, [oss2.models.PartInfo(n, e) for n, e in enumerate(etags, 1)])
    assert bk.get_object(key).read() == b"".join(datas)
    bk.abort_multipart_upload("open/two", seeded["uploads"]["open/two"][0])
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bk.list_parts("open/two", seeded["uploads"]["open/two"][0])


@needs_pg
def test_copy_resumes_and_refuses_a_target_that_differs():
    data = tempfile.mkdtemp(prefix="kura-copy-")
    try:
        seed_embedded_store(data)
        url = new_pg_database()
        first = subprocess.run([KURA, "meta", "copy", "--from", data, "--to", url], capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        assert "verified" in first.stdout
        objects = int(psql(url, "SELECT COUNT(*) FROM objects"))
        assert objects == 111

        # An interrupted copy: half the rows missing. Running again adds exactly those.
        psql(url, "DELETE FROM objects WHERE key < 'dir2'")
        missing = objects - int(psql(url, "SELECT COUNT(*) FROM objects"))
        assert missing > 0
        again = subprocess.run([KURA, "meta", "copy", "--from", data, "--to", url], capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert f"; {missing} inserted by this run" in again.stdout

        # A target whose rows differ from the source is not reported as a good copy.
        psql(url, "UPDATE objects SET rec = jsonb_set(rec, '{etag}', '\"0000\"') WHERE key = 'dir1/obj-001'")
        bad = subprocess.run([KURA, "meta", "copy", "--from", data, "--to", url], capture_output=True, text=True)
        assert bad.returncode != 0
        assert "objects: source 111 rows" in bad.stderr

        # A running embedded server holds the store: the copy says so instead of reading it.
        proc, _ = start_kura(data, log_name="running.log")
        try:
            busy = subprocess.run([KURA, "meta", "copy", "--from", data, "--to", url], capture_output=True, text=True)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert busy.returncode != 0
        assert "stop its kura serve first" in busy.stderr
    finally:
        shutil.rmtree(data, ignore_errors=True)


@needs_pg
def test_a_gateway_on_an_embedded_store_not_yet_copied_deletes_nothing():
    """Started with --meta on a directory whose metadata is still in meta.redb, a gateway's
    orphan sweep would take every blob for an orphan: it must not sweep until a copy into that
    database has been verified."""
    from conftest import Gateway
    data = tempfile.mkdtemp(prefix="kura-early-")
    try:
        seeded = seed_embedded_store(data)
        blobs = []
        for dirpath, _, files in os.walk(os.path.join(data, "blobs")):
            blobs.extend(os.path.join(dirpath, f) for f in files)
        old = time.time() - 7200
        for b in blobs:
            os.utime(b, (old, old))
        url = new_pg_database()
        early = Gateway(data, url, "--shared-file-grace-secs", "0")
        time.sleep(2)
        early.stop()
        left = sum(len(files) for _, _, files in os.walk(os.path.join(data, "blobs")))
        assert left == len(blobs), "a gateway swept the blobs of an embedded store not yet copied"
        r = subprocess.run([KURA, "meta", "copy", "--from", data, "--to", url], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        gw = Gateway(data, url, "--shared-file-grace-secs", "0")
        try:
            bk = oss2.Bucket(oss2.Auth(AK, SK), gw.endpoint, SEEDED_BUCKET)
            for key, digest in seeded["objects"].items():
                assert hashlib.md5(bk.get_object(key).read()).hexdigest() == digest, key
        finally:
            gw.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)
