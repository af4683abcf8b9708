"""What a signature covers: nothing outside it may act. Attacks as a holder of a presigned URL
or a man in the middle would try them, with boto3 and oss2 doing the signing."""
import hashlib

import oss2
import pytest
import requests
from botocore.exceptions import ClientError

from conftest import AK, SK, new_name, raw_request
from test_s3 import code, s3client


@pytest.fixture
def s3(server):
    """Signs with SigV4 everywhere, presigned URLs included (boto3's default for those is V2,
    which signs every x-amz-* header by construction)."""
    return s3client(server, signature_version="s3v4")


@pytest.fixture
def private_and_public(s3):
    private, public = new_name("priv"), new_name("pub")
    s3.create_bucket(Bucket=private)
    s3.create_bucket(Bucket=public, ACL="public-read")
    s3.put_object(Bucket=private, Key="secret", Body=b"top secret")
    return private, public


def assert_headers_not_signed(resp, *names):
    assert resp.status_code == 403, resp.text
    assert "<Code>AccessDenied</Code>" in resp.text
    assert "<HeadersNotSigned>" in resp.text
    for n in names:
        assert n in resp.text


def test_presigned_put_cannot_copy_and_publish(server, s3, private_and_public):
    private, public = private_and_public
    url = s3.generate_presigned_url("put_object", Params={"Bucket": public, "Key": "x"}, ExpiresIn=300)
    # As issued, the URL uploads the body it is given.
    assert requests.put(url, data=b"fine").status_code == 200
    attack = requests.put(url, headers={"x-amz-copy-source": f"/{private}/secret", "x-amz-acl": "public-read"})
    assert_headers_not_signed(attack, "x-amz-copy-source", "x-amz-acl")
    # Nothing changed: the object is still what the URL's holder uploaded.
    assert s3.get_object(Bucket=public, Key="x")["Body"].read() == b"fine"
    assert requests.get(f"{server.endpoint}/{public}/x").content == b"fine"
    assert requests.get(f"{server.endpoint}/{private}/secret").status_code == 403


def test_presigned_upload_part_cannot_copy(s3, private_and_public):
    private, public = private_and_public
    uid = s3.create_multipart_upload(Bucket=public, Key="m")["UploadId"]
    url = s3.generate_presigned_url(
        "upload_part", Params={"Bucket": public, "Key": "m", "UploadId": uid, "PartNumber": 1}, ExpiresIn=300)
    attack = requests.put(url, headers={"x-amz-copy-source": f"/{private}/secret"})
    assert_headers_not_signed(attack, "x-amz-copy-source")
    assert s3.list_parts(Bucket=public, Key="m", UploadId=uid).get("Parts", []) == []


def test_header_signed_request_with_an_extra_unsigned_header(s3, private_and_public):
    _, public = private_and_public

    def add_acl(request, **_):
        request.headers["x-amz-acl"] = "public-read"

    s3.meta.events.register("before-send.s3.PutObject", add_acl)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=public, Key="y", Body=b"data")
    assert code(e) == ("AccessDenied", 403)
    s3.meta.events.unregister("before-send.s3.PutObject", add_acl)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=public, Key="y")
    assert code(e)[1] == 404


def test_presigned_expiry_bounds(server, s3, private_and_public):
    private, _ = private_and_public
    ok = s3.generate_presigned_url("get_object", Params={"Bucket": private, "Key": "secret"}, ExpiresIn=60)
    assert requests.get(ok).content == b"top secret"
    for expires, status, code_name in [("0", 403, "AccessDenied"), ("-5", 403, "AccessDenied"),
                                       ("604801", 400, "AuthorizationQueryParametersError"),
                                       ("soon", 400, "AuthorizationQueryParametersError")]:
        url = ok.replace("X-Amz-Expires=60", f"X-Amz-Expires={expires}")
        r = requests.get(url)
        assert r.status_code == status and f"<Code>{code_name}</Code>" in r.text, (expires, r.text)
        assert b"top secret" not in r.content


def test_oss_presigned_expiry_bounds(server):
    b = oss2.Bucket(oss2.AuthV4(AK, SK), server.endpoint, new_name(), region="cn-hangzhou")
    b.create_bucket()
    b.put_object("k", b"v")
    url = b.sign_url("GET", "k", 60)
    assert requests.get(url).content == b"v"
    assert "x-oss-expires=60" in url
    assert requests.get(url.replace("x-oss-expires=60", "x-oss-expires=0")).status_code == 403
    assert requests.get(url.replace("x-oss-expires=60", "x-oss-expires=604801")).status_code == 400


def test_complete_body_must_match_signed_sha256(s3, private_and_public):
    """Over plain HTTP botocore signs each XML body's SHA-256; a body changed in transit must be
    refused, not obeyed."""
    _, bucket = private_and_public
    uid = s3.create_multipart_upload(Bucket=bucket, Key="c")["UploadId"]
    p1 = s3.upload_part(Bucket=bucket, Key="c", UploadId=uid, PartNumber=1, Body=b"a" * 200_000)
    p2 = s3.upload_part(Bucket=bucket, Key="c", UploadId=uid, PartNumber=2, Body=b"b" * 10)

    def drop_last_part(request, **_):
        body = request.body if isinstance(request.body, bytes) else request.body.read()
        cut = body.rfind(b"<Part>")
        request.body = body[:cut] + b"</CompleteMultipartUpload>"
        request.headers["Content-Length"] = str(len(request.body))

    s3.meta.events.register("before-send.s3.CompleteMultipartUpload", drop_last_part)
    parts = [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=uid, MultipartUpload={"Parts": parts})
    assert code(e) == ("XAmzContentSHA256Mismatch", 400)
    s3.meta.events.unregister("before-send.s3.CompleteMultipartUpload", drop_last_part)
    # The upload is untouched and completes as signed.
    s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=uid, MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket=bucket, Key="c")["ContentLength"] == 200_010


def test_oss_signed_payload_hash_is_checked(server, bucket_v1):
    """A hex x-oss-content-sha256 is covered by the signature, so the body must match it."""
    good = hashlib.sha256(b"payload").hexdigest()
    r = raw_request(server, "PUT", bucket_v1.bucket_name, "h", headers={"x-oss-content-sha256": good}, data=b"payload")
    assert r.status_code == 200, r.text
    r = raw_request(server, "PUT", bucket_v1.bucket_name, "h", headers={"x-oss-content-sha256": good}, data=b"tampered")
    assert r.status_code == 400 and "XAmzContentSHA256Mismatch" in r.text
    assert bucket_v1.get_object("h").read() == b"payload"
    r = raw_request(server, "PUT", bucket_v1.bucket_name, "h", headers={"x-oss-content-sha256": "STREAMING-X"}, data=b"x")
    assert r.status_code == 400 and "InvalidArgument" in r.text


@pytest.mark.parametrize("body", [
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>E</ETag></Part></CompleteMultipartUpload>garbage",
    b"<CompleteMultipartUpload></CompleteMultipartUpload><CompleteMultipartUpload></CompleteMultipartUpload>",
    b"<Delete><Part><PartNumber>1</PartNumber><ETag>E</ETag></Part></Delete>",
    b"<CompleteMultipartUpload><Part><PartNumber>1\x00</PartNumber><ETag>E</ETag></Part></CompleteMultipartUpload>",
    b"<CompleteMultipartUpload><Part><PartNumber>one</PartNumber><ETag>E</ETag></Part></CompleteMultipartUpload>",
])
def test_malformed_complete_bodies(server, bucket_v1, body):
    up = bucket_v1.init_multipart_upload("k")
    bucket_v1.upload_part("k", up.upload_id, 1, b"x")
    r = raw_request(server, "POST", bucket_v1.bucket_name, "k", params={"uploadId": up.upload_id}, data=body)
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text, r.text
    assert [p.part_number for p in bucket_v1.list_parts("k", up.upload_id).parts] == [1]


def test_malformed_delete_bodies(server, bucket_v1):
    bucket_v1.put_object("a", b"1")
    for body in [b"<Delete><Object><Key>a</Key></Object></Delete><Delete/>",
                 b"<Delete><Object><Key>a</Key></Object></Delete>trailing",
                 b"<Other><Object><Key>a</Key></Object></Other>"]:
        headers = {"Content-MD5": __import__("base64").b64encode(hashlib.md5(body).digest()).decode()}
        r = raw_request(server, "POST", bucket_v1.bucket_name, params={"delete": ""}, headers=headers, data=body)
        assert r.status_code == 400 and "MalformedXML" in r.text, r.text
    assert bucket_v1.object_exists("a")


@pytest.fixture(scope="module")
def s3b(server):
    client = s3client(server, signature_version="s3v4")
    name = new_name("ni")
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="obj", Body=b"original")
    return client, name


@pytest.mark.parametrize("call", [
    lambda c, b: c.put_object(Bucket=b, Key="obj", Body=b"x", ServerSideEncryption="AES256"),
    lambda c, b: c.put_object(Bucket=b, Key="obj", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey="k" * 32),
    lambda c, b: c.put_object(Bucket=b, Key="obj", Body=b"x", ObjectLockMode="COMPLIANCE",
                              ObjectLockRetainUntilDate="2030-01-01T00:00:00Z"),
    lambda c, b: c.put_object(Bucket=b, Key="obj", Body=b"x", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"'),
    lambda c, b: c.put_object(Bucket=b, Key="obj", Body=b"x", WebsiteRedirectLocation="/elsewhere"),
    lambda c, b: c.create_multipart_upload(Bucket=b, Key="obj", ServerSideEncryption="aws:kms"),
    lambda c, b: c.copy_object(Bucket=b, Key="obj", CopySource={"Bucket": b, "Key": "obj"},
                               MetadataDirective="REPLACE", ServerSideEncryption="AES256"),
    lambda c, b: c.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}),
    lambda c, b: c.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}),
    lambda c, b: c.put_object_retention(Bucket=b, Key="obj", Retention={"Mode": "GOVERNANCE",
                                        "RetainUntilDate": "2030-01-01T00:00:00Z"}),
    lambda c, b: c.delete_bucket_lifecycle(Bucket=b),
    lambda c, b: c.delete_bucket_cors(Bucket=b),
    lambda c, b: c.delete_bucket_policy(Bucket=b),
    lambda c, b: c.delete_object(Bucket=b, Key="obj", VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"),
], ids=["sse-s3", "sse-c", "object-lock", "grant-read", "website-redirect", "sse-kms-mpu",
        "copy-sse", "bucket-encryption", "lock-config", "retention",
        "delete-lifecycle", "delete-cors", "delete-policy", "delete-version"])
def test_unimplemented_features_are_refused_and_change_nothing(s3b, call):
    client, bucket = s3b
    with pytest.raises(ClientError) as e:
        call(client, bucket)
    assert code(e) == ("NotImplemented", 501)
    assert client.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"original"
    assert client.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_expected_bucket_owner(s3b):
    client, bucket = s3b
    assert client.get_object(Bucket=bucket, Key="obj", ExpectedBucketOwner="kura")["Body"].read() == b"original"
    with pytest.raises(ClientError) as e:
        client.delete_object(Bucket=bucket, Key="obj", ExpectedBucketOwner="111122223333")
    assert code(e) == ("AccessDenied", 403)
    assert client.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"original"


def test_form_uploads_are_refused(server, s3b):
    client, bucket = s3b
    post = client.generate_presigned_post(bucket, "form-key")
    r = requests.post(post["url"], data=post["fields"], files={"file": ("f", b"form body")})
    assert r.status_code == 501 and "NotImplemented" in r.text
    with pytest.raises(ClientError):
        client.head_object(Bucket=bucket, Key="form-key")
    r = requests.post(f"{server.endpoint}/{bucket}", files={"file": ("f", b"x")},
                      data={"key": "k2", "OSSAccessKeyId": AK, "policy": "e30=", "Signature": "x"})
    assert r.status_code == 501


def test_oss_unimplemented_headers_and_live_channels(bucket_v1):
    bucket_v1.put_object("obj", b"original")
    for headers in [{"x-oss-server-side-encryption": "AES256"},
                    {"x-oss-server-side-encryption": "KMS", "x-oss-server-side-encryption-key-id": "k"}]:
        with pytest.raises(oss2.exceptions.ServerError) as e:
            bucket_v1.put_object("obj", b"changed", headers=headers)
        assert e.value.status == 501
    assert bucket_v1.get_object("obj").read() == b"original"
    # The SDK test helpers list live channels to clean up; the honest answer is an empty list.
    listed = bucket_v1.list_live_channel()
    assert listed.channels == [] and not listed.is_truncated


def raw_http(server, method, path, body=b""):
    """Sends the path byte for byte (requests would repair a stray %)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, body=body)
    r = conn.getresponse()
    out = (r.status, r.read().decode())
    conn.close()
    return out


def test_bad_percent_encoding_is_refused(server, bucket_v1):
    name = bucket_v1.bucket_name
    for path in ["/%zz", f"/{name}/%zz", f"/{name}/a%2", f"/{name}/?prefix=%g0"]:
        status, text = raw_http(server, "GET", path)
        assert status == 400 and "<Code>InvalidURI</Code>" in text, (path, text)
    assert raw_http(server, "PUT", f"/{name}/%zz", b"x")[0] == 400
    assert not bucket_v1.object_exists("%zz")


def test_every_error_has_a_parseable_xml_body(server, bucket_v1):
    """Errors that echo client input with NUL or control bytes must still be XML."""
    import xml.etree.ElementTree as ET
    name = bucket_v1.bucket_name
    cases = [
        raw_request(server, "GET", "b\x00x", "k"),
        raw_request(server, "GET", name, "k\x01", params={"uploadId": "a\x00b"}),
        raw_request(server, "DELETE", name, "k", params={"uploadId": "\x00"}),
        raw_request(server, "PUT", name, "k", params={"uploadId": "u\x07", "partNumber": "1"}, data=b"x"),
        raw_request(server, "GET", name, "", params={"max-keys": "\x00"}),
        requests.get(f"{server.endpoint}/{name}/k%00?uploadId=%00", headers={"Authorization": "AWS4-HMAC-SHA256 x"}),
    ]
    for r in cases:
        assert 400 <= r.status_code < 600, r.status_code
        root = ET.fromstring(r.content)
        assert root.tag == "Error" and root.find("Code").text, r.content


def test_user_metadata_limits(server, bucket_v1, s3b):
    # OSS: 8 KiB of names and values.
    bucket_v1.put_object("m", b"x", headers={"x-oss-meta-a": "v" * 8000})
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket_v1.put_object("m2", b"x", headers={"x-oss-meta-a": "v" * 4096, "x-oss-meta-b": "v" * 4096})
    assert e.value.status == 400 and e.value.ec == "0011-00000002"
    assert not bucket_v1.object_exists("m2")
    with pytest.raises(oss2.exceptions.ServerError):
        bucket_v1.init_multipart_upload("m3", headers={"x-oss-meta-a": "v" * 9000})
    # S3: 2 KiB.
    client, bucket = s3b
    client.put_object(Bucket=bucket, Key="m", Body=b"x", Metadata={"a": "v" * 2000})
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=bucket, Key="m2", Body=b"x", Metadata={"a": "v" * 1500, "b": "v" * 600})
    assert code(e) == ("MetadataTooLarge", 400)
    with pytest.raises(ClientError) as e:
        client.copy_object(Bucket=bucket, Key="m3", CopySource={"Bucket": bucket, "Key": "m"},
                           MetadataDirective="REPLACE", Metadata={"a": "v" * 3000})
    assert code(e) == ("MetadataTooLarge", 400)


@pytest.mark.parametrize("method,target,sub", [
    ("PUT", "obj", "live"), ("DELETE", "obj", "live"), ("PUT", "obj", "location"), ("PUT", "obj", "uploads"),
    ("PUT", "obj", "bucketInfo"), ("PUT", "obj", "sequential"), ("DELETE", "obj", "partNumber=1"),
    ("DELETE", "", "uploads"), ("DELETE", "", "location"), ("DELETE", "", "live"), ("GET", "", "delete"),
])
def test_known_sub_resources_on_other_methods_are_not_plain_writes(server, bucket_v1, method, target, sub):
    """`PUT /b/k?live` is PutLiveChannel, not a PutObject that ignores `live`; likewise for the
    other selectors with a method that does not use them."""
    bucket_v1.put_object("obj", b"original")
    name, _, value = sub.partition("=")
    r = raw_request(server, method, bucket_v1.bucket_name, target, params={name: value}, data=b"<LiveChannelConfiguration/>")
    assert r.status_code == 501 and "NotImplemented" in r.text, r.text
    assert bucket_v1.get_object("obj").read() == b"original"
    assert bucket_v1.get_bucket_info().name == bucket_v1.bucket_name


def test_anonymous_readers_cannot_probe_private_buckets(server, bucket_v1):
    bucket_v1.put_object("exists", b"x")
    for key in ("exists", "missing"):
        r = requests.get(f"{server.endpoint}/{bucket_v1.bucket_name}/{key}")
        assert r.status_code == 403 and "AccessDenied" in r.text, (key, r.text)
        assert requests.head(f"{server.endpoint}/{bucket_v1.bucket_name}/{key}").status_code == 403
    bucket_v1.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    assert requests.get(f"{server.endpoint}/{bucket_v1.bucket_name}/missing").status_code == 404
    assert requests.get(f"{server.endpoint}/{bucket_v1.bucket_name}/exists").content == b"x"


def test_repeated_acting_headers_are_refused(server, bucket_v1):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("PUT", f"/{bucket_v1.bucket_name}/twice")
    conn.putheader("x-oss-object-acl", "private")
    conn.putheader("x-oss-object-acl", "public-read")
    conn.putheader("Content-Length", "1")
    conn.endheaders(b"x")
    r = conn.getresponse()
    assert r.status == 400 and b"InvalidArgument" in r.read()
    assert not bucket_v1.object_exists("twice")


def test_signature_v2_cannot_carry_attributes_unsigned(server, s3b):
    client, bucket = s3b
    v2 = s3client(server, signature_version="s3")
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "obj"}, ExpiresIn=60)
    assert requests.get(url).content == b"original"
    r = requests.get(url + "&attributes", headers={"x-amz-object-attributes": "ObjectSize"})
    assert r.status_code == 403, r.text


def test_s3_listings_of_unsafe_keys_stay_xml(server, s3b):
    import xml.etree.ElementTree as ET
    client, bucket = s3b
    client.put_object(Bucket=bucket, Key="ctl\x01key", Body=b"x")
    for params in ({"Bucket": bucket}, {"Bucket": bucket, "Prefix": "ctl"}):
        for op in ("list_objects", "list_objects_v2", "list_object_versions"):
            raw = requests.get(client.generate_presigned_url(op, Params=params)).content
            root = ET.fromstring(raw)
            assert root.find("{*}EncodingType").text == "url", raw


def test_an_early_answer_closes_the_connection(server, bucket_v1):
    """A refusal given before the body was read must not leave that body to be read as the
    next request on the connection (botocore sends Expect: 100-continue and then no body)."""
    bucket_v1.put_object("taken", b"x")
    r = raw_request(server, "PUT", bucket_v1.bucket_name, "taken",
                    headers={"x-oss-forbid-overwrite": "true"}, data=b"new body")
    assert r.status_code == 409
    assert r.headers.get("Connection", "").lower() == "close"
    ok = raw_request(server, "PUT", bucket_v1.bucket_name, "fresh", data=b"y")
    assert ok.status_code == 200 and ok.headers.get("Connection", "").lower() != "close"
