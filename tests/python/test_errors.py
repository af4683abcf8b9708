"""Bad input gets the exact OSS error and loses nothing."""
import base64
import hashlib
import socket
import threading
import time

import oss2
import pytest
import requests
from oss2.models import PartInfo

from conftest import AK, SK, new_name, raw_request


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_wrong_content_md5_is_invalid_digest_and_stores_nothing(bucket):
    upload_id = bucket.init_multipart_upload("k").upload_id
    with pytest.raises(oss2.exceptions.InvalidDigest) as e:
        bucket.upload_part("k", upload_id, 1, b"hello", headers={"Content-MD5": md5_b64(b"other")})
    assert e.value.status == 400
    assert bucket.list_parts("k", upload_id).parts == []
    ok = bucket.upload_part("k", upload_id, 1, b"hello", headers={"Content-MD5": md5_b64(b"hello")})
    assert ok.etag == hashlib.md5(b"hello").hexdigest().upper()
    with pytest.raises(oss2.exceptions.InvalidDigest):
        bucket.put_object("obj", b"data", headers={"Content-MD5": md5_b64(b"nope")})
    assert not bucket.object_exists("obj")


@pytest.mark.parametrize("number", [0, 10001, -1])
def test_bad_part_numbers(bucket, number):
    upload_id = bucket.init_multipart_upload("k").upload_id
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.upload_part("k", upload_id, number, b"x")
    assert (e.value.status, e.value.code) == (400, "InvalidArgument")


def test_part_10000_is_accepted_and_reupload_replaces(bucket):
    upload_id = bucket.init_multipart_upload("k").upload_id
    bucket.upload_part("k", upload_id, 10000, b"first")
    r = bucket.upload_part("k", upload_id, 10000, b"second!")
    parts = bucket.list_parts("k", upload_id).parts
    assert [(p.part_number, p.size, p.etag) for p in parts] == [(10000, 7, r.etag)]


def test_complete_checks_every_part(bucket):
    key = "checked"
    upload_id = bucket.init_multipart_upload(key).upload_id
    big, small = b"a" * 102400, b"b" * 102399
    r1 = bucket.upload_part(key, upload_id, 1, big)
    r2 = bucket.upload_part(key, upload_id, 2, small)
    r3 = bucket.upload_part(key, upload_id, 3, b"tail")

    def complete(parts):
        # Sent as raw XML: oss2 would sort the list itself.
        body = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{p.part_number}</PartNumber><ETag>\"{p.etag}\"</ETag></Part>" for p in parts
        ) + "</CompleteMultipartUpload>"
        with pytest.raises(oss2.exceptions.ServerError) as e:
            bucket._Bucket__do_object("POST", key, data=body.encode(), params={"uploadId": upload_id})
        return e.value.status, e.value.code

    assert complete([PartInfo(2, r2.etag), PartInfo(1, r1.etag)]) == (400, "InvalidPartOrder")
    assert complete([PartInfo(1, r1.etag), PartInfo(4, r3.etag)]) == (400, "InvalidPart")
    assert complete([PartInfo(1, r2.etag)]) == (400, "InvalidPart")
    assert complete([PartInfo(1, r1.etag), PartInfo(2, r2.etag), PartInfo(3, r3.etag)]) == (400, "EntityTooSmall")
    # Nothing was lost by the failed attempts: a correct list still completes; part 2 dropped.
    ok = bucket.complete_multipart_upload(key, upload_id, [PartInfo(1, r1.etag), PartInfo(3, r3.etag)])
    assert bucket.get_object(key).read() == big + b"tail"
    assert ok.etag.endswith("-2")


def test_exactly_minimum_part_and_single_tiny_part(bucket):
    key = "edges"
    upload_id = bucket.init_multipart_upload(key).upload_id
    r1 = bucket.upload_part(key, upload_id, 1, b"a" * 102400)
    r2 = bucket.upload_part(key, upload_id, 2, b"b" * 102400)
    bucket.complete_multipart_upload(key, upload_id, [PartInfo(1, r1.etag), PartInfo(2, r2.etag)])
    upload_id = bucket.init_multipart_upload("tiny").upload_id
    r = bucket.upload_part("tiny", upload_id, 1, b"12345")
    bucket.complete_multipart_upload("tiny", upload_id, [PartInfo(1, r.etag)])
    assert bucket.get_object("tiny").read() == b"12345"


def test_malformed_xml(bucket):
    upload_id = bucket.init_multipart_upload("k").upload_id
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket._Bucket__do_object("POST", "k", data=b"<CompleteMultipartUpload><Part>", params={"uploadId": upload_id})
    assert (e.value.status, e.value.code) == (400, "MalformedXML")


def test_complete_all_and_its_conflict_with_a_body(bucket):
    key = "all"
    upload_id = bucket.init_multipart_upload(key).upload_id
    r1 = bucket.upload_part(key, upload_id, 1, b"a" * 102400)
    bucket.upload_part(key, upload_id, 2, b"z")
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.complete_multipart_upload(key, upload_id, [PartInfo(1, r1.etag)], headers={"x-oss-complete-all": "yes"})
    assert (e.value.status, e.value.code) == (400, "InvalidArgument")
    res = bucket.complete_multipart_upload(key, upload_id, None, headers={"x-oss-complete-all": "yes"})
    assert res.crc is not None
    assert bucket.get_object(key).read() == b"a" * 102400 + b"z"


def test_forbid_overwrite(bucket):
    bucket.put_object("exists", b"old")
    h = {"x-oss-forbid-overwrite": "true"}
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.put_object("exists", b"new", headers=h)
    assert (e.value.status, e.value.code) == (409, "FileAlreadyExists")
    upload_id = bucket.init_multipart_upload("later").upload_id
    r = bucket.upload_part("later", upload_id, 1, b"mp")
    bucket.put_object("later", b"sneaked in")
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.complete_multipart_upload("later", upload_id, [PartInfo(1, r.etag)], headers=h)
    assert (e.value.status, e.value.code) == (409, "FileAlreadyExists")
    assert bucket.get_object("exists").read() == b"old"
    assert bucket.get_object("later").read() == b"sneaked in"


def test_retried_complete_gets_the_same_answer(bucket):
    key = "retry"
    upload_id = bucket.init_multipart_upload(key).upload_id
    r = bucket.upload_part(key, upload_id, 1, b"once")
    first = bucket.complete_multipart_upload(key, upload_id, [PartInfo(1, r.etag)])
    second = bucket.complete_multipart_upload(key, upload_id, [PartInfo(1, r.etag)])
    assert (second.status, second.etag, second.crc) == (200, first.etag, first.crc)
    # A different part list, or any other call, finds the upload gone.
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.complete_multipart_upload(key, upload_id, [PartInfo(2, r.etag)])
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.upload_part(key, upload_id, 2, b"late")
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.list_parts(key, upload_id)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.abort_multipart_upload(key, upload_id)


def test_upload_id_of_another_key_is_no_such_upload(bucket):
    upload_id = bucket.init_multipart_upload("a").upload_id
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.upload_part("b", upload_id, 1, b"x")


def test_traversal_keys_are_ordinary_keys(bucket, server):
    for key in ["../x", "a/../../etc/passwd", "..\\y", "a//b", "%2e%2e/z", "sp ace+plus"]:
        bucket.put_object(key, key.encode())
        assert bucket.get_object(key).read() == key.encode()
    keys = {o.key for o in oss2.ObjectIterator(bucket)}
    assert "../x" in keys and "sp ace+plus" in keys
    # Nothing escaped the data directory's blob tree.
    import os
    assert all(os.path.realpath(p).startswith(os.path.realpath(server.data_dir)) for p in server.blob_files())


def test_invalid_names(bucket):
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.put_object("k" * 1024, b"x")
    assert e.value.code == "InvalidObjectName"



@pytest.mark.parametrize("name", ["Bad_Name", "ab", "-abc", "abc-", "a" * 64])
def test_invalid_bucket_names(server, name):
    r = raw_request(server, "PUT", name)
    assert r.status_code == 400
    assert "<Code>InvalidBucketName</Code>" in r.text


def test_missing_bucket_and_key(bucket):
    nob = oss2.Bucket(oss2.Auth(AK, SK), bucket.endpoint, new_name())
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        nob.init_multipart_upload("k")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("missing")
    # HEAD errors travel in x-oss-err: oss2 tells NoSuchKey (False) from NoSuchBucket (raise).
    assert bucket.object_exists("missing") is False
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        nob.object_exists("k")
    with pytest.raises(oss2.exceptions.NotFound) as e:
        bucket.head_object("missing")
    assert e.value.request_id


def test_bucket_not_empty_counts_unfinished_uploads(server):
    b = oss2.Bucket(oss2.Auth(AK, SK), server.endpoint, new_name())
    b.create_bucket()
    upload_id = b.init_multipart_upload("pending").upload_id
    with pytest.raises(oss2.exceptions.BucketNotEmpty):
        b.delete_bucket()
    b.abort_multipart_upload("pending", upload_id)
    b.delete_bucket()
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        b.get_bucket_info()


def test_authentication_failures(server, bucket_v1):
    wrong = oss2.Bucket(oss2.Auth(AK, "wrong"), server.endpoint, bucket_v1.bucket_name)
    with pytest.raises(oss2.exceptions.ServerError) as e:
        wrong.put_object("x", b"x")
    assert (e.value.status, e.value.code) == (403, "SignatureDoesNotMatch")
    wrong4 = oss2.Bucket(oss2.AuthV4(AK, "wrong"), server.endpoint, bucket_v1.bucket_name, region="cn-hangzhou")
    with pytest.raises(oss2.exceptions.ServerError) as e:
        wrong4.put_object("x", b"x")
    assert e.value.code == "SignatureDoesNotMatch"
    unknown = oss2.Bucket(oss2.Auth("nobody", SK), server.endpoint, bucket_v1.bucket_name)
    with pytest.raises(oss2.exceptions.ServerError) as e:
        unknown.get_object("x")
    assert e.value.code == "InvalidAccessKeyId"
    anon = oss2.Bucket(oss2.AnonymousAuth(), server.endpoint, bucket_v1.bucket_name)
    with pytest.raises(oss2.exceptions.AccessDenied):
        anon.put_object("x", b"x")
    assert not bucket_v1.object_exists("x")


def test_clock_skew(server, bucket_v1):
    r = raw_request(server, "GET", bucket_v1.bucket_name, headers={"Date": "Sat, 12 Dec 2015 00:35:55 GMT"})
    assert r.status_code == 403
    assert "<Code>RequestTimeTooSkewed</Code>" in r.text
    assert "<ServerTime>" in r.text and ".000Z</ServerTime>" in r.text


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_presigned_urls(server, bucket_v1, version):
    if version == "v1":
        b = bucket_v1
    else:
        b = oss2.Bucket(oss2.AuthV4(AK, SK), server.endpoint, bucket_v1.bucket_name, region="cn-hangzhou")
    put_url = b.sign_url("PUT", "presigned", 60)
    assert requests.put(put_url, data=b"via url").status_code == 200
    get_url = b.sign_url("GET", "presigned", 60)
    r = requests.get(get_url)
    assert (r.status_code, r.content) == (200, b"via url")
    assert "x-oss-request-id" in r.headers
    expired = b.sign_url("GET", "presigned", -1 if version == "v1" else 1)
    if version == "v4":
        time.sleep(2.1)
    assert requests.get(expired).status_code == 403
    tampered = get_url.replace("presigned", "presigneX")
    assert requests.get(tampered).status_code == 403


def test_public_read_bucket_allows_anonymous_reads_only(server):
    name = new_name()
    owner = oss2.Bucket(oss2.Auth(AK, SK), server.endpoint, name)
    owner.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ)
    owner.put_object("pub", b"public bytes")
    owner.put_object("priv", b"secret", headers={"x-oss-object-acl": "private"})
    anon = oss2.Bucket(oss2.AnonymousAuth(), server.endpoint, name)
    assert anon.get_object("pub").read() == b"public bytes"
    with pytest.raises(oss2.exceptions.AccessDenied):
        anon.get_object("priv")
    with pytest.raises(oss2.exceptions.AccessDenied):
        anon.put_object("new", b"x")
    assert owner.get_bucket_acl().acl == "public-read"


def _raw_put_then_disconnect(port, path, announced, sent):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {announced}\r\n\r\n".encode())
    s.sendall(b"z" * sent)
    time.sleep(0.2)
    s.close()


def test_disconnect_mid_part_leaves_no_part_and_no_file(server):
    name = new_name()
    owner = oss2.Bucket(oss2.Auth(AK, SK), server.endpoint, name)
    owner.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    upload_id = owner.init_multipart_upload("cut").upload_id
    before = set(server.blob_files())
    _raw_put_then_disconnect(server.port, f"/{name}/cut?partNumber=1&uploadId={upload_id}", 4 * 1024 * 1024, 300 * 1024)
    _raw_put_then_disconnect(server.port, f"/{name}/cutobj", 4 * 1024 * 1024, 300 * 1024)
    deadline = time.time() + 10
    while time.time() < deadline and server.tmp_files():
        time.sleep(0.1)
    assert server.tmp_files() == []
    # No file was added (files of objects earlier tests deleted may go meanwhile: the sweeper).
    assert set(server.blob_files()) - before == set()
    assert owner.list_parts("cut", upload_id).parts == []
    assert not owner.object_exists("cutobj")


def test_racing_uploads_of_one_part_leave_exactly_one(bucket):
    key = "race"
    upload_id = bucket.init_multipart_upload(key).upload_id
    bodies = [bytes([65 + i]) * (512 * 1024) for i in range(4)]
    etags = {}

    def up(i):
        etags[i] = bucket.upload_part(key, upload_id, 1, bodies[i]).etag

    threads = [threading.Thread(target=up, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    parts = bucket.list_parts(key, upload_id).parts
    assert len(parts) == 1
    winner = [i for i in etags if etags[i] == parts[0].etag]
    assert len(winner) == 1
    bucket.complete_multipart_upload(key, upload_id, [PartInfo(1, parts[0].etag)])
    assert bucket.get_object(key).read() == bodies[winner[0]]


def test_abort_deletes_part_files(server, bucket_v1):
    before = set(server.blob_files())
    upload_id = bucket_v1.init_multipart_upload("gone").upload_id
    for n in range(1, 4):
        bucket_v1.upload_part("gone", upload_id, n, b"q" * 1000)
    assert len(set(server.blob_files()) - before) == 3
    bucket_v1.abort_multipart_upload("gone", upload_id)
    deadline = time.time() + 15  # the sweeper runs every 5 s (grace 0 in tests)
    while time.time() < deadline and set(server.blob_files()) - before:
        time.sleep(0.2)
    assert set(server.blob_files()) - before == set()


def test_unsupported_sub_resources_change_nothing(bucket):
    bucket.put_object("keep", b"precious")
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.put_symlink("keep", "keep")
    assert (e.value.status, e.value.code) == (501, "NotImplemented")
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.append_object("appended", 0, b"x")
    assert e.value.status == 501
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.delete_bucket_cors()
    assert e.value.status == 501
    assert bucket.get_object("keep").read() == b"precious"
    assert bucket.get_bucket_info().name == bucket.bucket_name


def test_batch_delete_checks_every_key_first(bucket):
    bucket.put_object("d1", b"1")
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.batch_delete_objects(["d1", "/bad"])
    assert e.value.code == "InvalidObjectName"
    assert bucket.object_exists("d1")


def test_max_keys_zero_is_an_empty_final_page(bucket):
    bucket.put_object("a", b"1")
    page = bucket.list_objects(max_keys=0)
    assert page.object_list == [] and not page.is_truncated


def test_complete_of_unknown_upload_is_no_such_upload_whatever_the_body(bucket):
    body = b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket._Bucket__do_object("POST", "k", data=body, params={"uploadId": "0" * 32})
    upload_id = bucket.init_multipart_upload("k").upload_id
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket._Bucket__do_object("POST", "k", data=body, params={"uploadId": upload_id})
    assert (e.value.status, e.value.code) == (400, "InvalidPartOrder")


def test_forbid_overwrite_given_at_initiate_holds_at_complete(bucket):
    upload_id = bucket.init_multipart_upload("guarded", headers={"x-oss-forbid-overwrite": "true"}).upload_id
    r = bucket.upload_part("guarded", upload_id, 1, b"mp")
    bucket.put_object("guarded", b"arrived first")
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.complete_multipart_upload("guarded", upload_id, [PartInfo(1, r.etag)])
    assert (e.value.status, e.value.code) == (409, "FileAlreadyExists")
    assert bucket.get_object("guarded").read() == b"arrived first"


def test_put_bucket_refuses_a_body_that_is_not_a_bucket_configuration(server):
    r = raw_request(server, "PUT", new_name(), data=b"this is object data sent to the wrong address")
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text


def test_stalled_clients_do_not_starve_the_server(server, bucket_v1):
    """Connections that stop mid-body or never read a download hold no server thread: more of
    them than tokio's blocking pool has threads (512) leave the server answering."""
    bucket_v1.put_object("big", b"z" * (8 * 1024 * 1024))
    socks = []
    name = bucket_v1.bucket_name
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(f"PUT /{name}/stall-{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode() + b"a" * 10)
        socks.append(s)
    for _ in range(300):
        r = requests.get(bucket_v1.sign_url("GET", "big", 60), stream=True)
        socks.append(r)
    # A starved server would not answer at all; the timeout turns that into a failure.
    patient = oss2.Bucket(bucket_v1.auth, bucket_v1.endpoint, name, connect_timeout=30)
    assert patient.get_object_meta("big").content_length == 8 * 1024 * 1024
    assert patient.put_object("after", b"still writable").status == 200
    for s in socks:
        s.close()


def test_error_codes_carry_oss_ec(bucket, v2client):
    import alibabacloud_oss_v2 as oss
    with pytest.raises(oss2.exceptions.NoSuchKey) as e:
        bucket.get_object("nope")
    assert e.value.ec == "0026-00000001"
    upload_id = bucket.init_multipart_upload("k").upload_id
    bucket.abort_multipart_upload("k", upload_id)
    with pytest.raises(oss2.exceptions.NoSuchUpload) as e:
        bucket.upload_part("k", upload_id, 1, b"x")
    assert e.value.ec == "0042-00000104"
    # The v2 SDK reads EC from HEAD's x-oss-err / x-oss-ec too.
    with pytest.raises(Exception) as e:
        v2client.head_object(oss.HeadObjectRequest(bucket=bucket.bucket_name, key="nope"))
    assert "0026-00000001" in str(e.value)


def test_nul_in_keys_markers_and_upload_ids_is_refused_not_a_server_error(server, bucket_v1):
    """NUL cannot live in either metadata backend's keys (PostgreSQL TEXT refuses it): a key with
    one is InvalidObjectName, and NUL in a marker or an upload id is a client error, never 500."""
    name = bucket_v1.bucket_name
    r = raw_request(server, "PUT", name, "a\x00b", data=b"x")
    assert r.status_code == 400 and "<Code>InvalidObjectName</Code>" in r.text
    r = raw_request(server, "POST", name, "a\x00b", params={"uploads": ""})
    assert r.status_code == 400 and "<Code>InvalidObjectName</Code>" in r.text
    for params in ({"marker": "a\x00"}, {"prefix": "\x00"}, {"uploads": "", "key-marker": "k\x00"}):
        r = raw_request(server, "GET", name, params=params)
        assert r.status_code in (200, 400), (params, r.status_code, r.text)
    r = raw_request(server, "GET", name, "k", params={"uploadId": "\x00"})
    assert r.status_code in (400, 404), r.text


def test_racing_forbid_overwrite_one_winner(bucket):
    """32 oss2 clients create the same key at once with x-oss-forbid-overwrite (their metadata
    writes share group commits): exactly one wins, the others get FileAlreadyExists, and the
    object holds the winner's bytes."""
    from concurrent.futures import ThreadPoolExecutor
    h = {"x-oss-forbid-overwrite": "true"}
    for round_ in range(3):
        key_round = f"contended-{round_}"
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda i: create_key(bucket, key_round, i, h), range(32)))
        winners = [i for i in results if i is not None]
        assert len(winners) == 1, winners
        assert bucket.get_object(key_round).read() == f"writer {winners[0]}".encode()


def create_key(bucket, key, i, headers):
    try:
        bucket.put_object(key, f"writer {i}".encode(), headers=headers)
        return i
    except oss2.exceptions.ServerError as e:
        assert (e.status, e.code) == (409, "FileAlreadyExists")
        return None
