"""Bucket and object calls as the SDKs make them."""
import hashlib

import oss2
import pytest
import alibabacloud_oss_v2 as oss
from oss2.models import PartInfo

from conftest import AK, SK, REGION, new_name


def test_put_get_head_with_metadata(bucket):
    headers = {"Content-Type": "text/plain", "x-oss-meta-Author": "alice", "Cache-Control": "no-cache",
               "Content-Disposition": "attachment; filename=a.txt"}
    r = bucket.put_object("meta.txt", b"hello world", headers=headers)
    assert r.etag == hashlib.md5(b"hello world").hexdigest().upper()
    head = bucket.head_object("meta.txt")
    assert head.content_type == "text/plain"
    assert head.headers["x-oss-meta-author"] == "alice"
    assert head.headers["Cache-Control"] == "no-cache"
    assert head.headers["Content-Disposition"] == "attachment; filename=a.txt"
    assert head.object_type == "Normal"
    meta = bucket.get_object_meta("meta.txt")
    assert meta.content_length == 11 and meta.etag == r.etag
    got = bucket.get_object("meta.txt", params={"response-content-type": "application/x-test"})
    assert got.headers["Content-Type"] == "application/x-test"
    assert got.read() == b"hello world"


def test_ranges_and_conditionals(bucket):
    bucket.put_object("r", b"0123456789")
    assert bucket.get_object("r", byte_range=(2, 5)).read() == b"2345"
    assert bucket.get_object("r", byte_range=(None, 3)).read() == b"789"
    etag = bucket.head_object("r").etag
    assert bucket.get_object("r", headers={"If-Match": etag}).read() == b"0123456789"  # unquoted, as oss2 resumes
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        bucket.get_object("r", headers={"If-Match": '"00000000000000000000000000000000"'})
    with pytest.raises(oss2.exceptions.NotModified):
        bucket.get_object("r", headers={"If-None-Match": f'"{etag}"'})


def test_copy_and_update_meta(bucket):
    bucket.put_object("src", b"copy me", headers={"x-oss-meta-k": "v", "Content-Type": "text/x-src"})
    r = bucket.copy_object(bucket.bucket_name, "src", "dst")
    assert r.etag == hashlib.md5(b"copy me").hexdigest().upper()
    assert bucket.get_object("dst").read() == b"copy me"
    assert bucket.head_object("dst").headers["x-oss-meta-k"] == "v"
    bucket.update_object_meta("dst", {"x-oss-meta-k": "new", "Content-Type": "text/x-new"})
    head = bucket.head_object("dst")
    assert head.headers["x-oss-meta-k"] == "new" and head.content_type == "text/x-new"
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.copy_object(bucket.bucket_name, "no-such-source", "dst2")


def test_upload_part_copy(bucket):
    src = bytes(range(256)) * 1000  # 256,000 bytes
    bucket.put_object("part-src", src)
    upload_id = bucket.init_multipart_upload("assembled").upload_id
    r1 = bucket.upload_part_copy(bucket.bucket_name, "part-src", (0, 102399), "assembled", upload_id, 1)
    r2 = bucket.upload_part_copy(bucket.bucket_name, "part-src", (102400, 255999), "assembled", upload_id, 2)
    assert r1.etag == hashlib.md5(src[:102400]).hexdigest().upper()
    bucket.complete_multipart_upload("assembled", upload_id, [PartInfo(1, r1.etag), PartInfo(2, r2.etag)])
    assert bucket.get_object("assembled").read() == src


def test_batch_delete_and_listing(bucket):
    keys = ["a/1", "a/2", "a/b/3", "b/1", "c"]
    for k in keys:
        bucket.put_object(k, b"x")
    assert sorted(o.key for o in oss2.ObjectIterator(bucket, max_keys=2)) == keys
    top = list(oss2.ObjectIterator(bucket, delimiter="/", max_keys=1))
    assert [o.key for o in top] == ["a/", "b/", "c"]
    assert [o.is_prefix() for o in top] == [True, True, False]
    v2 = list(oss2.ObjectIteratorV2(bucket, prefix="a/", delimiter="/", max_keys=1))
    assert [o.key for o in v2] == ["a/1", "a/2", "a/b/"]
    result = bucket.batch_delete_objects(["a/1", "c", "does-not-exist"])
    assert sorted(result.deleted_keys) == ["a/1", "c", "does-not-exist"]
    assert sorted(o.key for o in oss2.ObjectIterator(bucket)) == ["a/2", "a/b/3", "b/1"]


def test_acls(bucket):
    bucket.put_object("acl", b"x")
    assert bucket.get_object_acl("acl").acl == "default"
    bucket.put_object_acl("acl", oss2.OBJECT_ACL_PUBLIC_READ)
    assert bucket.get_object_acl("acl").acl == "public-read"
    bucket.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    assert bucket.get_bucket_acl().acl == "public-read"


def test_bucket_info_location_and_service_listing(server, bucket):
    info = bucket.get_bucket_info()
    assert info.name == bucket.bucket_name
    assert info.location == "oss-" + REGION
    assert info.acl.grant == "private"
    assert bucket.get_bucket_location().location == "oss-" + REGION
    service = oss2.Service(oss2.Auth(AK, SK), server.endpoint)
    names = [b.name for b in oss2.BucketIterator(service)]
    assert bucket.bucket_name in names
    # Re-creating your own bucket is fine.
    bucket.create_bucket()


def test_list_uploads_with_delimiter_and_url_encoding(bucket):
    for k in ["x/1", "x/2", "y/\x0c\x0a\x0b", "z"]:
        bucket.init_multipart_upload(k)
    uploads = list(oss2.MultipartUploadIterator(bucket, delimiter="/", max_uploads=1))
    assert [u.key for u in uploads] == ["x/", "y/", "z"]
    inner = list(oss2.MultipartUploadIterator(bucket, prefix="y/"))
    assert [u.key for u in inner] == ["y/\x0c\x0a\x0b"]


def test_v2_sdk_basics(v2client):
    b = new_name()
    v2client.put_bucket(oss.PutBucketRequest(bucket=b))
    v2client.put_object(oss.PutObjectRequest(bucket=b, key="dir/k1", body=b"one"))
    v2client.put_object(oss.PutObjectRequest(bucket=b, key="dir/k2", body=b"two"))
    got = v2client.get_object(oss.GetObjectRequest(bucket=b, key="dir/k1"))
    assert got.body.read() == b"one"
    keys = []
    for page in v2client.list_objects_v2_paginator(limit=1).iter_page(oss.ListObjectsV2Request(bucket=b)):
        keys += [o.key for o in page.contents or []]
    assert keys == ["dir/k1", "dir/k2"]
    init = v2client.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=b, key="mp"))
    for n in (1, 2, 3):
        v2client.upload_part(oss.UploadPartRequest(bucket=b, key="mp", upload_id=init.upload_id, part_number=n,
                                                   body=bytes([n]) * (102400 if n < 3 else 5)))
    listed = []
    for page in v2client.list_parts_paginator(limit=2).iter_page(
            oss.ListPartsRequest(bucket=b, key="mp", upload_id=init.upload_id)):
        listed += [(p.part_number, p.hash_crc64) for p in page.parts]
    assert [n for n, _ in listed] == [1, 2, 3]
    assert all(crc for _, crc in listed)
    parts = [oss.UploadPart(part_number=n, etag=None) for n, _ in listed]
    r = v2client.complete_multipart_upload(oss.CompleteMultipartUploadRequest(
        bucket=b, key="mp", upload_id=init.upload_id, complete_all="yes"))
    assert r.hash_crc64
    assert v2client.get_object(oss.GetObjectRequest(bucket=b, key="mp")).body.read() == b"\x01" * 102400 + b"\x02" * 102400 + b"\x03" * 5
    v2client.delete_object(oss.DeleteObjectRequest(bucket=b, key="mp"))
    assert not v2client.is_object_exist(b, "mp")
    assert v2client.is_object_exist(b, "dir/k1")
    assert v2client.is_bucket_exist(b)
    assert not v2client.is_bucket_exist(new_name())
    del parts


def test_get_in_progress_keeps_reading_what_it_started_with(server, bucket_v1):
    import os
    import time
    # Three 4 MiB parts: the reader opens the later blob files only after the delete below,
    # so only the read lease keeps them from the sweeper.
    parts = [os.urandom(4 * 1024 * 1024) for _ in range(3)]
    upload_id = bucket_v1.init_multipart_upload("moving").upload_id
    infos = [PartInfo(n, bucket_v1.upload_part("moving", upload_id, n, p).etag) for n, p in enumerate(parts, 1)]
    bucket_v1.complete_multipart_upload("moving", upload_id, infos)
    original = b"".join(parts)
    stream = bucket_v1.get_object("moving")
    first = stream.read(64 * 1024)
    bucket_v1.put_object("moving", b"replacement")
    bucket_v1.delete_object("moving")
    time.sleep(6)  # the sweeper (grace 0 in tests) has run at least once
    rest = stream.read()
    assert first + rest == original
