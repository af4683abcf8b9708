"""The seed document's six flows, as oss2 users run them, with V1 and with V4 signing."""
import os

import oss2
import pytest
from oss2.models import PartInfo
from oss2.utils import Crc64

from conftest import new_name

PART = 100 * 1024


def crc64_of(data):
    c = Crc64()
    c.update(data)
    return c.crc


def upload_in_parts(bucket, key, path, part_size=PART):
    """Initiate, upload each part read at its offset, complete with the collected ETags."""
    size = os.path.getsize(path)
    upload_id = bucket.init_multipart_upload(key).upload_id
    parts = []
    with open(path, "rb") as f:
        n, offset = 1, 0
        while offset < size:
            length = min(part_size, size - offset)
            f.seek(offset)
            result = bucket.upload_part(key, upload_id, n, f.read(length))
            parts.append(PartInfo(n, result.etag, size=length, part_crc=result.crc))
            offset += length
            n += 1
    return upload_id, parts


def test_initiate_returns_unique_ids(bucket):
    ids = {bucket.init_multipart_upload("same-key").upload_id for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 32 and i == i.upper() for i in ids)


def test_upload_parts_and_complete(bucket, tmpfile):
    path = tmpfile(PART * 5 + 12345)
    upload_id, parts = upload_in_parts(bucket, "dir/seed.bin", path)
    assert len(parts) == 6
    result = bucket.complete_multipart_upload("dir/seed.bin", upload_id, parts)
    data = open(path, "rb").read()
    # oss2 itself compares the combined part CRCs with the Complete header; check it too.
    assert result.crc == crc64_of(data)
    assert result.etag.endswith("-6")
    got = bucket.get_object("dir/seed.bin").read()
    assert got == data
    head = bucket.head_object("dir/seed.bin")
    assert head.content_length == len(data)
    assert head.object_type == "Multipart"
    assert head.server_crc == crc64_of(data)


def test_part_etag_is_uppercase_md5_and_crc_header(bucket):
    import hashlib
    upload_id = bucket.init_multipart_upload("k").upload_id
    body = b"x" * 1000
    r = bucket.upload_part("k", upload_id, 1, body)
    assert r.etag == hashlib.md5(body).hexdigest().upper()
    assert r.crc == crc64_of(body)


def test_list_parts_default_and_paged(bucket):
    key = "many-parts"
    upload_id = bucket.init_multipart_upload(key).upload_id
    for n in range(1, 121):
        bucket.upload_part(key, upload_id, n, b"p%d" % n)
    everything = bucket.list_parts(key, upload_id)
    assert [p.part_number for p in everything.parts] == list(range(1, 121))
    assert not everything.is_truncated
    assert everything.parts[0].size == 2
    pages, marker = [], "0"
    while True:
        page = bucket.list_parts(key, upload_id, marker=marker, max_parts=50)
        pages.append([p.part_number for p in page.parts])
        if not page.is_truncated:
            break
        marker = page.next_marker
    assert [len(p) for p in pages] == [50, 50, 20]
    assert sum(pages, []) == list(range(1, 121))
    # The iterator oss2 users reach for.
    assert [p.part_number for p in oss2.PartIterator(bucket, key, upload_id, max_parts=50)] == list(range(1, 121))


def test_list_multipart_uploads_default_and_paged(bucket):
    keys = [f"obj-{i:03d}" for i in range(60)]
    ids = {}
    for k in keys:
        ids.setdefault(k, []).append(bucket.init_multipart_upload(k).upload_id)
    # Two uploads of one key, listed in upload-id (= initiation) order.
    ids["obj-000"].append(bucket.init_multipart_upload("obj-000").upload_id)
    everything = bucket.list_multipart_uploads()
    listed = [(u.key, u.upload_id) for u in everything.upload_list]
    expected = [(k, i) for k in keys for i in ids[k]]
    assert listed == expected
    pages, key_marker, id_marker = [], "", ""
    while True:
        page = bucket.list_multipart_uploads(key_marker=key_marker, upload_id_marker=id_marker, max_uploads=50)
        pages.append([(u.key, u.upload_id) for u in page.upload_list])
        if not page.is_truncated:
            break
        key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker
    assert [len(p) for p in pages] == [50, 11]
    assert sum(pages, []) == expected
    assert [(u.key, u.upload_id) for u in oss2.MultipartUploadIterator(bucket, max_uploads=7)] == expected


def test_abort_then_no_such_upload(bucket, server):
    key = "to-abort"
    upload_id = bucket.init_multipart_upload(key).upload_id
    bucket.upload_part(key, upload_id, 1, b"a" * 5000)
    bucket.upload_part(key, upload_id, 2, b"b" * 5000)
    bucket.abort_multipart_upload(key, upload_id)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.list_parts(key, upload_id)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.upload_part(key, upload_id, 3, b"c")
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.abort_multipart_upload(key, upload_id)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.complete_multipart_upload(key, upload_id, [])
    assert upload_id not in [u.upload_id for u in bucket.list_multipart_uploads().upload_list]
