"""The S3 dialect with the real S3 tools: boto3 and aws-cli, against the same server and store."""
import base64
import hashlib
import os
import subprocess
import sys
import time

import boto3
import oss2
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import AK, SK, new_name


def s3client(server, secret=SK, **cfg):
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=AK, aws_secret_access_key=secret,
        region_name="us-east-1", config=Config(retries={"max_attempts": 1}, **cfg))


@pytest.fixture
def s3(server):
    return s3client(server)


@pytest.fixture
def s3bucket(s3):
    name = new_name("s3")
    s3.create_bucket(Bucket=name)
    return name


def code(exc):
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_multipart_with_boto3(s3, s3bucket):
    mpu = s3.create_multipart_upload(Bucket=s3bucket, Key="big", ChecksumAlgorithm="CRC32")
    uid = mpu["UploadId"]
    chunks = [os.urandom(5 * 1024 * 1024), os.urandom(5 * 1024 * 1024), os.urandom(1234)]
    parts = []
    for n, data in enumerate(chunks, 1):
        r = s3.upload_part(Bucket=s3bucket, Key="big", UploadId=uid, PartNumber=n, Body=data, ChecksumAlgorithm="CRC32")
        assert r["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    listed = s3.list_parts(Bucket=s3bucket, Key="big", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2] and listed["IsTruncated"]
    rest = s3.list_parts(Bucket=s3bucket, Key="big", UploadId=uid, PartNumberMarker=listed["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    uploads = s3.list_multipart_uploads(Bucket=s3bucket)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [uid]
    done = s3.complete_multipart_upload(Bucket=s3bucket, Key="big", UploadId=uid, MultipartUpload={"Parts": parts})
    # S3's multipart ETag: MD5 of the binary part digests.
    expected = hashlib.md5(b"".join(hashlib.md5(c).digest() for c in chunks)).hexdigest() + "-3"
    assert done["ETag"] == '"%s"' % expected
    assert done["ChecksumCRC32"].endswith("-3")
    whole = b"".join(chunks)
    assert s3.get_object(Bucket=s3bucket, Key="big")["Body"].read() == whole
    part2 = s3.get_object(Bucket=s3bucket, Key="big", PartNumber=2)
    assert part2["PartsCount"] == 3 and part2["Body"].read() == chunks[1]
    attrs = s3.get_object_attributes(Bucket=s3bucket, Key="big", ObjectAttributes=["ETag", "Checksum", "ObjectParts", "ObjectSize"])
    assert attrs["ObjectSize"] == len(whole) and attrs["ObjectParts"]["TotalPartsCount"] == 3
    assert attrs["Checksum"]["ChecksumType"] == "COMPOSITE"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=s3bucket, Key="big", UploadId=uid, PartNumber=4, Body=b"late")
    assert code(e) == ("NoSuchUpload", 404)


def test_abort_and_errors(s3, s3bucket):
    uid = s3.create_multipart_upload(Bucket=s3bucket, Key="k")["UploadId"]
    r = s3.upload_part(Bucket=s3bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"tiny")
    small = s3.upload_part(Bucket=s3bucket, Key="k", UploadId=uid, PartNumber=2, Body=b"also tiny")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=s3bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": r["ETag"]}, {"PartNumber": 2, "ETag": small["ETag"]}]})
    assert code(e) == ("EntityTooSmall", 400)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=s3bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    assert code(e) == ("InvalidPart", 400)
    s3.abort_multipart_upload(Bucket=s3bucket, Key="k", UploadId=uid)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=s3bucket, Key="k", UploadId=uid)
    assert code(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=s3bucket, Key="missing")
    assert code(e) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=s3bucket, Key="missing")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=s3bucket)
    assert code(e) == ("BucketAlreadyOwnedByYou", 409)


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_checksums_of_every_algorithm(s3, s3bucket, algorithm):
    data = os.urandom(300_000)
    r = s3.put_object(Bucket=s3bucket, Key=algorithm, Body=data, ChecksumAlgorithm=algorithm)
    field = "Checksum" + algorithm
    assert r[field]
    got = s3.get_object(Bucket=s3bucket, Key=algorithm, ChecksumMode="ENABLED")
    assert got[field] == r[field]
    assert got["Body"].read() == data
    head = s3.head_object(Bucket=s3bucket, Key=algorithm, ChecksumMode="ENABLED")
    assert head[field] == r[field]
    if algorithm in ("SHA1", "SHA256"):
        h = hashlib.new(algorithm.lower(), data).digest()
        assert r[field] == base64.b64encode(h).decode()
    # A wrong value is refused and nothing is stored.
    wrong = base64.b64encode(bytes(len(base64.b64decode(r[field])))).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=s3bucket, Key=algorithm + "-bad", Body=data, **{field: wrong})
    assert code(e)[1] == 400 and code(e)[0] in ("BadDigest", "InvalidRequest")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=s3bucket, Key=algorithm + "-bad")


def test_full_object_checksum_multipart(s3, s3bucket):
    uid = s3.create_multipart_upload(Bucket=s3bucket, Key="fo", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT")["UploadId"]
    a, b = os.urandom(5 * 1024 * 1024), os.urandom(777)
    parts = []
    for n, data in enumerate([a, b], 1):
        r = s3.upload_part(Bucket=s3bucket, Key="fo", UploadId=uid, PartNumber=n, Body=data, ChecksumAlgorithm="CRC64NVME")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC64NVME": r["ChecksumCRC64NVME"]})
    done = s3.complete_multipart_upload(Bucket=s3bucket, Key="fo", UploadId=uid, MultipartUpload={"Parts": parts})
    whole = s3.put_object(Bucket=s3bucket, Key="fo-single", Body=a + b, ChecksumAlgorithm="CRC64NVME")
    assert done["ChecksumCRC64NVME"] == whole["ChecksumCRC64NVME"]
    assert done["ChecksumType"] == "FULL_OBJECT"


def test_listing_paging_and_versions(s3, s3bucket):
    keys = [f"p/{i:02d}" for i in range(7)] + ["q/x", "top"]
    for k in keys:
        s3.put_object(Bucket=s3bucket, Key=k, Body=k.encode())
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=s3bucket, PaginationConfig={"PageSize": 2})
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(keys)
    top = s3.list_objects_v2(Bucket=s3bucket, Delimiter="/")
    assert [c["Prefix"] for c in top["CommonPrefixes"]] == ["p/", "q/"] and [o["Key"] for o in top["Contents"]] == ["top"]
    v1 = s3.get_paginator("list_objects").paginate(Bucket=s3bucket, PaginationConfig={"PageSize": 3})
    assert [o["Key"] for p in v1 for o in p.get("Contents", [])] == sorted(keys)
    versions = s3.list_object_versions(Bucket=s3bucket, Prefix="p/")["Versions"]
    assert len(versions) == 7 and all(v["VersionId"] == "null" and v["IsLatest"] for v in versions)
    deleted = s3.delete_objects(Bucket=s3bucket, Delete={"Objects": [{"Key": "top"}, {"Key": "q/x"}, {"Key": "nope"}]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["nope", "q/x", "top"]
    assert s3.list_objects_v2(Bucket=s3bucket, Prefix="q/")["KeyCount"] == 0
    assert s3.get_bucket_location(Bucket=s3bucket)["LocationConstraint"] == "cn-hangzhou"
    assert any(b["Name"] == s3bucket for b in s3.list_buckets()["Buckets"])
    s3.head_bucket(Bucket=s3bucket)


def test_conditional_writes_copy_and_acl(s3, s3bucket):
    first = s3.put_object(Bucket=s3bucket, Key="c", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=s3bucket, Key="c", Body=b"two", IfNoneMatch="*")
    assert code(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=s3bucket, Key="c", Body=b"two", IfMatch='"00000000000000000000000000000000"')
    assert code(e) == ("PreconditionFailed", 412)
    s3.put_object(Bucket=s3bucket, Key="c", Body=b"two", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=s3bucket, Key="c")["Body"].read() == b"two"
    s3.put_object(Bucket=s3bucket, Key="m", Body=b"meta", Metadata={"color": "blue"}, ContentType="text/x-a")
    s3.copy_object(Bucket=s3bucket, Key="m2", CopySource={"Bucket": s3bucket, "Key": "m"})
    h = s3.head_object(Bucket=s3bucket, Key="m2")
    assert h["Metadata"] == {"color": "blue"} and h["ContentType"] == "text/x-a"
    s3.copy_object(Bucket=s3bucket, Key="m2", CopySource={"Bucket": s3bucket, "Key": "m"},
                   MetadataDirective="REPLACE", Metadata={"color": "red"}, ContentType="text/x-b")
    h = s3.head_object(Bucket=s3bucket, Key="m2")
    assert h["Metadata"] == {"color": "red"} and h["ContentType"] == "text/x-b"
    s3.put_object_acl(Bucket=s3bucket, Key="m", ACL="public-read")
    grants = s3.get_object_acl(Bucket=s3bucket, Key="m")["Grants"]
    assert any(g["Permission"] == "READ" for g in grants)
    assert requests.get(f"{s3.meta.endpoint_url}/{s3bucket}/m").content == b"meta"  # anonymous
    assert requests.get(f"{s3.meta.endpoint_url}/{s3bucket}/c").status_code == 403


def test_presigned_urls_and_wrong_secret(server, s3, s3bucket):
    put = s3.generate_presigned_url("put_object", Params={"Bucket": s3bucket, "Key": "pre"}, ExpiresIn=60)
    assert requests.put(put, data=b"presigned").status_code == 200
    get = s3.generate_presigned_url("get_object", Params={"Bucket": s3bucket, "Key": "pre"}, ExpiresIn=60)
    r = requests.get(get)
    assert (r.status_code, r.content) == (200, b"presigned")
    assert "x-amz-request-id" in r.headers
    assert requests.get(get.replace("pre?", "prx?")).status_code == 403
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": s3bucket, "Key": "pre"}, ExpiresIn=1)
    time.sleep(2.1)
    assert requests.get(expired).status_code == 403
    bad = s3client(server, secret="wrong")
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket=s3bucket, Key="x", Body=b"x")
    assert code(e) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=s3bucket, Key="x")


def test_one_store_two_dialects(server, s3, s3bucket):
    # An object written with oss2 is read with boto3, and the other way round.
    ob = oss2.Bucket(oss2.Auth(AK, SK), server.endpoint, s3bucket)
    ob.put_object("from-oss", b"oss bytes", headers={"x-oss-meta-a": "1"})
    got = s3.get_object(Bucket=s3bucket, Key="from-oss")
    assert got["Body"].read() == b"oss bytes" and got["Metadata"] == {"a": "1"}
    s3.put_object(Bucket=s3bucket, Key="from-s3", Body=b"s3 bytes")
    assert ob.get_object("from-s3").read() == b"s3 bytes"
    # An upload started with boto3 is listed and completed with oss2.
    uid = s3.create_multipart_upload(Bucket=s3bucket, Key="mixed")["UploadId"]
    s3.upload_part(Bucket=s3bucket, Key="mixed", UploadId=uid, PartNumber=1, Body=b"a" * 102400)
    ob.upload_part("mixed", uid, 2, b"b" * 10)
    parts = ob.list_parts("mixed", uid).parts
    assert [p.part_number for p in parts] == [1, 2]
    ob.complete_multipart_upload("mixed", uid, [oss2.models.PartInfo(p.part_number, p.etag) for p in parts])
    assert s3.get_object(Bucket=s3bucket, Key="mixed")["Body"].read() == b"a" * 102400 + b"b" * 10


def test_aws_cli_cp_both_ways_and_ls(server, tmp_path, s3bucket):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024 + 17))  # past aws-cli's 8 MiB multipart threshold
    env = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION="us-east-1",
               AWS_MAX_ATTEMPTS="1")
    aws = [os.path.join(os.path.dirname(sys.executable), "aws"), "--endpoint-url", server.endpoint]

    def run(*args):
        out = subprocess.run(aws + list(args), env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    run("s3", "cp", str(src), f"s3://{s3bucket}/dir/big.bin", "--only-show-errors")
    listing = run("s3", "ls", f"s3://{s3bucket}/dir/")
    assert "big.bin" in listing and str(src.stat().st_size) in listing
    back = tmp_path / "back.bin"
    run("s3", "cp", f"s3://{s3bucket}/dir/big.bin", str(back), "--only-show-errors")
    assert back.read_bytes() == src.read_bytes()
    uid = run("s3api", "create-multipart-upload", "--bucket", s3bucket, "--key", "api", "--query", "UploadId", "--output", "text").strip()
    run("s3api", "upload-part", "--bucket", s3bucket, "--key", "api", "--upload-id", uid, "--part-number", "1", "--body", str(src))
    parts = run("s3api", "list-parts", "--bucket", s3bucket, "--key", "api", "--upload-id", uid)
    assert '"PartNumber": 1' in parts
    run("s3api", "abort-multipart-upload", "--bucket", s3bucket, "--key", "api", "--upload-id", uid)
    assert run("s3api", "list-multipart-uploads", "--bucket", s3bucket).strip() in ("", "{}") or uid not in run("s3api", "list-multipart-uploads", "--bucket", s3bucket)


def test_acl_grant_bodies_are_refused_not_ignored(s3, s3bucket):
    s3.put_object(Bucket=s3bucket, Key="g", Body=b"x", ACL="public-read")
    policy = s3.get_object_acl(Bucket=s3bucket, Key="g")
    with pytest.raises(ClientError) as e:
        s3.put_object_acl(Bucket=s3bucket, Key="g", AccessControlPolicy={"Grants": [], "Owner": policy["Owner"]})
    assert code(e) == ("NotImplemented", 501)
    assert any(g["Permission"] == "READ" for g in s3.get_object_acl(Bucket=s3bucket, Key="g")["Grants"])


def test_failed_complete_checksum_changes_nothing(s3, s3bucket):
    """A Complete whose expected FULL_OBJECT checksum is wrong is refused before the commit:
    the old object stays, and the upload can still be completed with the right value."""
    import zlib
    s3.put_object(Bucket=s3bucket, Key="fc", Body=b"the old object")
    uid = s3.create_multipart_upload(Bucket=s3bucket, Key="fc", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")["UploadId"]
    a, b = os.urandom(5 * 1024 * 1024), os.urandom(100)
    parts = []
    for n, data in enumerate([a, b], 1):
        r = s3.upload_part(Bucket=s3bucket, Key="fc", UploadId=uid, PartNumber=n, Body=data, ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    right = base64.b64encode(zlib.crc32(a + b).to_bytes(4, "big")).decode()
    wrong = base64.b64encode((zlib.crc32(a + b) ^ 1).to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=s3bucket, Key="fc", UploadId=uid, MultipartUpload={"Parts": parts},
                                     ChecksumCRC32=wrong, ChecksumType="FULL_OBJECT")
    assert code(e) == ("BadDigest", 400)
    assert s3.get_object(Bucket=s3bucket, Key="fc")["Body"].read() == b"the old object"
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=s3bucket, Key="fc", UploadId=uid)["Parts"]] == [1, 2]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=s3bucket, Key="fc", UploadId=uid, MultipartUpload={"Parts": parts},
                                     ChecksumCRC32="not base64!", ChecksumType="FULL_OBJECT")
    assert code(e) == ("InvalidRequest", 400)
    done = s3.complete_multipart_upload(Bucket=s3bucket, Key="fc", UploadId=uid, MultipartUpload={"Parts": parts},
                                        ChecksumCRC32=right, ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC32"] == right
    assert s3.get_object(Bucket=s3bucket, Key="fc")["Body"].read() == a + b


def test_listing_pages_past_keys_with_the_largest_code_point(s3, s3bucket):
    """The cursor after a common prefix must pass keys that hold U+10FFFF (it once returned
    the same page forever)."""
    keys = ["a/" + "\U0010FFFF" * 6, "a/x", "b/" + "\U0010FFFF" * 5 + "z", "c"]
    for k in keys:
        s3.put_object(Bucket=s3bucket, Key=k, Body=b"x")
    for method in ("list_objects", "list_objects_v2"):
        pages = s3.get_paginator(method).paginate(Bucket=s3bucket, Delimiter="/", PaginationConfig={"PageSize": 1, "MaxItems": 20})
        seen = []
        for p in pages:
            seen += [c["Prefix"] for c in p.get("CommonPrefixes", [])] + [o["Key"] for o in p.get("Contents", [])]
        assert seen == ["a/", "b/", "c"], method


def test_parts_in_attributes_and_part_reads(s3, s3bucket):
    uid = s3.create_multipart_upload(Bucket=s3bucket, Key="pa", ChecksumAlgorithm="CRC32")["UploadId"]
    chunks = [os.urandom(5 * 1024 * 1024), os.urandom(321)]
    parts = []
    for n, data in enumerate(chunks, 1):
        r = s3.upload_part(Bucket=s3bucket, Key="pa", UploadId=uid, PartNumber=n, Body=data, ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    s3.complete_multipart_upload(Bucket=s3bucket, Key="pa", UploadId=uid, MultipartUpload={"Parts": parts})
    first = s3.get_object_attributes(Bucket=s3bucket, Key="pa", ObjectAttributes=["ObjectParts"], MaxParts=1)["ObjectParts"]
    assert first["TotalPartsCount"] == 2 and first["IsTruncated"] and first["NextPartNumberMarker"] == 1
    assert [(p["PartNumber"], p["Size"], p["ChecksumCRC32"]) for p in first["Parts"]] == [(1, len(chunks[0]), parts[0]["ChecksumCRC32"])]
    rest = s3.get_object_attributes(Bucket=s3bucket, Key="pa", ObjectAttributes=["ObjectParts"], PartNumberMarker=1)["ObjectParts"]
    assert not rest["IsTruncated"] and [p["PartNumber"] for p in rest["Parts"]] == [2]
    part2 = s3.get_object(Bucket=s3bucket, Key="pa", PartNumber=2, ChecksumMode="ENABLED")
    assert part2["Body"].read() == chunks[1]
    assert part2["ChecksumCRC32"] == parts[1]["ChecksumCRC32"] and part2["ChecksumType"] == "COMPOSITE"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=s3bucket, Key="pa", PartNumber=3)
    assert code(e) == ("InvalidPartNumber", 416)
    # A one-part multipart object still reports its part count.
    uid = s3.create_multipart_upload(Bucket=s3bucket, Key="one")["UploadId"]
    r = s3.upload_part(Bucket=s3bucket, Key="one", UploadId=uid, PartNumber=1, Body=b"only part")
    s3.complete_multipart_upload(Bucket=s3bucket, Key="one", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]})
    head = s3.head_object(Bucket=s3bucket, Key="one", PartNumber=1)
    assert head["PartsCount"] == 1 and head["ResponseMetadata"]["HTTPStatusCode"] == 206


def test_s3_conformance_details(server, s3, s3bucket):
    # 304 carries the ETag.
    put = s3.put_object(Bucket=s3bucket, Key="v", Body=b"validated", ContentEncoding="gzip,  br")
    r = requests.get(s3.generate_presigned_url("get_object", Params={"Bucket": s3bucket, "Key": "v"}),
                     headers={"If-None-Match": put["ETag"]})
    assert r.status_code == 304 and r.headers["ETag"] == put["ETag"] and "Last-Modified" in r.headers
    # Content-Encoding comes back byte for byte.
    assert s3.head_object(Bucket=s3bucket, Key="v")["ContentEncoding"] == "gzip,  br"
    # Canned ACL grants in S3's order: AllUsers first, the owner last.
    s3.put_object_acl(Bucket=s3bucket, Key="v", ACL="public-read-write")
    grants = s3.get_object_acl(Bucket=s3bucket, Key="v")["Grants"]
    assert [(g["Grantee"]["Type"], g["Permission"]) for g in grants] == [
        ("Group", "READ"), ("Group", "WRITE"), ("CanonicalUser", "FULL_CONTROL")]
    # An empty continuation token is echoed.
    listed = s3.list_objects_v2(Bucket=s3bucket, ContinuationToken="")
    assert listed["ContinuationToken"] == ""
    # URL-encoded listings: the delimiter never encoded, the prefix only in V2.
    s3.put_object(Bucket=s3bucket, Key="a b/c", Body=b"x")
    raw = requests.get(s3.generate_presigned_url(
        "list_objects", Params={"Bucket": s3bucket, "Prefix": "a b", "Delimiter": "/", "EncodingType": "url"})).text
    assert "<Prefix>a b</Prefix>" in raw and "<Delimiter>/</Delimiter>" in raw
    raw = requests.get(s3.generate_presigned_url(
        "list_objects_v2", Params={"Bucket": s3bucket, "Prefix": "a b", "Delimiter": "/", "EncodingType": "url"})).text
    assert "<Prefix>a%20b</Prefix>" in raw and "<Delimiter>/</Delimiter>" in raw


def test_conditional_deletes(s3, s3bucket):
    put = s3.put_object(Bucket=s3bucket, Key="d", Body=b"12345")
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=s3bucket, Key="d", IfMatch='"00000000000000000000000000000000"')
    assert code(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=s3bucket, Key="d", IfMatchSize=4)
    assert code(e) == ("PreconditionFailed", 412)
    modified = s3.head_object(Bucket=s3bucket, Key="d")["LastModified"]
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=s3bucket, Key="d", IfMatchLastModifiedTime=modified.replace(year=2001))
    assert code(e) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=s3bucket, Key="d")["Body"].read() == b"12345"
    s3.delete_object(Bucket=s3bucket, Key="d", IfMatch=put["ETag"], IfMatchSize=5, IfMatchLastModifiedTime=modified)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=s3bucket, Key="d")
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=s3bucket, Key="d", IfMatch=put["ETag"])
    assert code(e) == ("NoSuchKey", 404)
    # DeleteObjects: per object, a failed condition is that object's error; the rest proceed.
    a = s3.put_object(Bucket=s3bucket, Key="x1", Body=b"1")
    s3.put_object(Bucket=s3bucket, Key="x2", Body=b"2")
    out = s3.delete_objects(Bucket=s3bucket, Delete={"Objects": [
        {"Key": "x1", "ETag": a["ETag"]}, {"Key": "x2", "ETag": '"ffffffffffffffffffffffffffffffff"'}]})
    assert [d["Key"] for d in out["Deleted"]] == ["x1"]
    assert [(er["Key"], er["Code"]) for er in out["Errors"]] == [("x2", "PreconditionFailed")]
    assert s3.get_object(Bucket=s3bucket, Key="x2")["Body"].read() == b"2"


def test_bucket_names_and_list_buckets_paging(s3):
    dotted = new_name("dot").replace("-", ".")
    s3.create_bucket(Bucket=dotted)
    s3.put_object(Bucket=dotted, Key="k", Body=b"in a dotted bucket")
    assert s3.get_object(Bucket=dotted, Key="k")["Body"].read() == b"in a dotted bucket"
    for bad in ["a..b", "192.168.5.4", "UPPER"]:
        with pytest.raises(ClientError) as e:
            s3.create_bucket(Bucket=bad)
        assert code(e)[0] == "InvalidBucketName"
    names = [new_name("lb") for _ in range(3)]
    for n in names:
        s3.create_bucket(Bucket=n)
    seen, token = [], None
    while True:
        kw = {"MaxBuckets": 2, "Prefix": "lb-"}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_buckets(**kw)
        assert len(page["Buckets"]) <= 2
        seen += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
    assert set(names) <= set(seen) and seen == sorted(seen) and all(n.startswith("lb-") for n in seen)


def test_racing_if_none_match_one_winner(server, s3bucket):
    """32 boto3 clients PUT the same key at once with If-None-Match: * : exactly one 200, the
    rest 412, and the object is the winner's."""
    from concurrent.futures import ThreadPoolExecutor
    clients = [s3client(server) for _ in range(8)]

    def put(i):
        try:
            clients[i % 8].put_object(Bucket=s3bucket, Key="race", Body=f"w{i}".encode(), IfNoneMatch="*")
            return i
        except ClientError as e:
            assert (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]) == \
                ("PreconditionFailed", 412)
            return None

    with ThreadPoolExecutor(32) as pool:
        winners = [i for i in pool.map(put, range(32)) if i is not None]
    assert len(winners) == 1, winners
    got = clients[0].get_object(Bucket=s3bucket, Key="race")["Body"].read()
    assert got == f"w{winners[0]}".encode()
