"""OSS behaviours the C++ SDK's own tests rely on, checked with oss2 and the v2 SDK."""
import email.utils
import time

import alibabacloud_oss_v2 as oss
import oss2
import pytest
from oss2.models import PartInfo

from conftest import new_name


def test_copy_source_conditions_answer_304(bucket_v1):
    b = bucket_v1
    etag = b.put_object("src", b"source bytes").etag
    with pytest.raises(oss2.exceptions.NotModified):
        b.copy_object(b.bucket_name, "src", "dst", headers={"x-oss-copy-source-if-none-match": etag})
    future = email.utils.formatdate(time.time() + 3600, usegmt=True)
    with pytest.raises(oss2.exceptions.NotModified):
        b.copy_object(b.bucket_name, "src", "dst", headers={"x-oss-copy-source-if-modified-since": future})
    assert not b.object_exists("dst")
    up = b.init_multipart_upload("mp")
    with pytest.raises(oss2.exceptions.NotModified):
        b.upload_part_copy(b.bucket_name, "src", (0, 5), "mp", up.upload_id, 1,
                           headers={"x-oss-copy-source-if-none-match": etag})
    assert b.list_parts("mp", up.upload_id).parts == []
    # A failed if-match is still 412.
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        b.copy_object(b.bucket_name, "src", "dst", headers={"x-oss-copy-source-if-match": '"0000"'})


def test_sequential_uploads_are_enforced(bucket_v1):
    b = bucket_v1
    up = b.init_multipart_upload("seq", params={"sequential": ""})
    r1 = b.upload_part("seq", up.upload_id, 1, b"a" * 102400)
    with pytest.raises(oss2.exceptions.ServerError) as e:
        b.upload_part("seq", up.upload_id, 3, b"c")
    assert e.value.status == 400 and e.value.code == "PartNotSequential"
    r2 = b.upload_part("seq", up.upload_id, 2, b"b")
    # Re-uploading an earlier number is fine.
    r1 = b.upload_part("seq", up.upload_id, 1, b"a" * 102400)
    b.complete_multipart_upload("seq", up.upload_id, [PartInfo(1, r1.etag), PartInfo(2, r2.etag)])
    assert b.get_object("seq").read() == b"a" * 102400 + b"b"
    # Without ?sequential any order is fine.
    up = b.init_multipart_upload("free")
    b.upload_part("free", up.upload_id, 3, b"c")


def test_list_uploads_names_the_last_upload_on_every_page(bucket_v1):
    b = bucket_v1
    ids = [b.init_multipart_upload(f"u{i}").upload_id for i in range(3)]
    page = b.list_multipart_uploads(max_uploads=2)
    assert page.is_truncated and (page.next_key_marker, page.next_upload_id_marker) == ("u1", ids[1])
    last = b.list_multipart_uploads(key_marker=page.next_key_marker, upload_id_marker=page.next_upload_id_marker)
    assert not last.is_truncated and [u.key for u in last.upload_list] == ["u2"]
    assert (last.next_key_marker, last.next_upload_id_marker) == ("u2", ids[2])


def test_complete_location_is_encoded_once(server, v2client):
    name = new_name()
    v2client.put_bucket(oss.PutBucketRequest(bucket=name))
    key = "dir/a key with spaces+plus"
    init = v2client.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=name, key=key))
    part = v2client.upload_part(oss.UploadPartRequest(bucket=name, key=key, upload_id=init.upload_id,
                                                      part_number=1, body=b"data"))
    done = v2client.complete_multipart_upload(oss.CompleteMultipartUploadRequest(
        bucket=name, key=key, upload_id=init.upload_id, encoding_type="url",
        complete_multipart_upload=oss.CompleteMultipartUpload(parts=[oss.UploadPart(part_number=1, etag=part.etag)])))
    assert done.key == key
    # The v2 SDK decodes only Key; the C++ SDK decodes Location too, once.
    from urllib.parse import unquote
    assert unquote(done.location) == f"http://127.0.0.1:{server.port}/{name}/{key}"
