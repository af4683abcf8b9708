"""Object and bucket tags, as the SDKs set and read them (oss2, alibabacloud-oss-v2, boto3)."""
import oss2
import pytest
import alibabacloud_oss_v2 as oss
from botocore.exceptions import ClientError
from oss2.models import PartInfo, Tagging, TaggingRule

from conftest import REGION, new_name, raw_request
from test_s3 import s3client


def rule(**pairs):
    r = TaggingRule()
    for k, v in pairs.items():
        r.add(k, v)
    return r


def tags_xml(pairs):
    body = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f"<Tagging><TagSet>{body}</TagSet></Tagging>".encode()


def test_object_tagging_round_trip(bucket):
    bucket.put_object("t", b"tagged")
    assert bucket.get_object_tagging("t").tag_set.tagging_rule == {}
    assert "x-oss-tagging-count" not in bucket.head_object("t").headers
    before = bucket.head_object("t").last_modified
    bucket.put_object_tagging("t", Tagging(rule(team="storage", env="")))
    got = bucket.get_object_tagging("t").tag_set.tagging_rule
    assert got == {"team": "storage", "env": ""}
    head = bucket.head_object("t")
    assert head.headers["x-oss-tagging-count"] == "2"
    assert head.last_modified == before, "changing tags changed Last-Modified"
    assert bucket.get_object("t").headers["x-oss-tagging-count"] == "2"
    # Replaced whole, then deleted (204).
    bucket.put_object_tagging("t", Tagging(rule(only="one")))
    assert bucket.get_object_tagging("t").tag_set.tagging_rule == {"only": "one"}
    assert bucket.delete_object_tagging("t").status == 204
    assert bucket.get_object_tagging("t").tag_set.tagging_rule == {}
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object_tagging("missing")


def test_tagging_header_on_put_multipart_and_copy(bucket):
    # oss2 percent-encodes keys and values: `+-/` = `:+:` travels as %2B-/=%3A%2B%3A.
    bucket.put_object("h", b"x", headers={"x-oss-tagging": "a=1&%2B-/=%3A%2B%3A&bare"})
    assert bucket.get_object_tagging("h").tag_set.tagging_rule == {"a": "1", "+-/": ":+:", "bare": ""}
    # Initiate's tags go to the object at Complete.
    up = bucket.init_multipart_upload("mp", headers={"x-oss-tagging": "stage=upload"}).upload_id
    p = bucket.upload_part("mp", up, 1, b"part")
    bucket.complete_multipart_upload("mp", up, [PartInfo(1, p.etag)])
    assert bucket.get_object_tagging("mp").tag_set.tagging_rule == {"stage": "upload"}
    # Copy keeps the source's tags; REPLACE (any case) takes the header's, or none.
    bucket.copy_object(bucket.bucket_name, "h", "c1")
    assert bucket.get_object_tagging("c1").tag_set.tagging_rule == {"a": "1", "+-/": ":+:", "bare": ""}
    bucket.copy_object(bucket.bucket_name, "h", "c2",
                       headers={"x-oss-tagging-directive": "REPLACE", "x-oss-tagging": "new=yes"})
    assert bucket.get_object_tagging("c2").tag_set.tagging_rule == {"new": "yes"}
    bucket.copy_object(bucket.bucket_name, "h", "c3", headers={"x-oss-tagging-directive": "Replace"})
    assert bucket.get_object_tagging("c3").tag_set.tagging_rule == {}


def test_object_tag_limits_change_nothing(server, bucket):
    bucket.put_object("lim", b"x", headers={"x-oss-tagging": "keep=me"})
    name = bucket.bucket_name
    bad_sets = [
        [(f"k{i}", "v") for i in range(11)],          # more than 10
        [("k" * 129, "v")],                           # key too long
        [("k", "v" * 257)],                           # value too long
        [("%abc", "v")],                              # forbidden character
        [("dup", "1"), ("dup", "2")],                 # duplicate key
    ]
    for pairs in bad_sets:
        r = raw_request(server, "PUT", name, "lim", params={"tagging": ""}, data=tags_xml(pairs))
        assert r.status_code == 400 and "<Code>InvalidTag</Code>" in r.text, (pairs, r.text)
    r = raw_request(server, "PUT", name, "lim", params={"tagging": ""}, data=b"<Tagging><TagSet><Tag>")
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text
    assert bucket.get_object_tagging("lim").tag_set.tagging_rule == {"keep": "me"}
    # A bad header refuses the whole write: nothing stored.
    for header in ["aa=bb=cc", "&".join(f"k{i}=v" for i in range(11))]:
        with pytest.raises(oss2.exceptions.ServerError) as e:
            bucket.put_object("never", b"x", headers={"x-oss-tagging": header})
        assert (e.value.status, e.value.code) == (400, "InvalidTag")
    assert not bucket.object_exists("never")
    # Ten tags, 128-character keys, 256-character values and Unicode letters are fine.
    ok = [(f"k{i}", "v") for i in range(9)] + [("中文" + "k" * 126, " +/ " + "v" * 252)]
    r = raw_request(server, "PUT", name, "lim", params={"tagging": ""}, data=tags_xml(ok))
    assert r.status_code == 200, r.text
    assert len(bucket.get_object_tagging("lim").tag_set.tagging_rule) == 10


def test_bucket_tagging_and_list_filter(server, bucket):
    service = oss2.Service(bucket.auth, bucket.endpoint, region=REGION)
    assert bucket.get_bucket_tagging().tag_set.tagging_rule == {}
    bucket.put_bucket_tagging(Tagging(rule(team="storage", env="test", tier="1")))
    assert bucket.get_bucket_tagging().tag_set.tagging_rule == {"team": "storage", "env": "test", "tier": "1"}
    other = oss2.Bucket(bucket.auth, bucket.endpoint, new_name("tg"), region=REGION)
    other.create_bucket()
    other.put_bucket_tagging(Tagging(rule(team="web")))
    names = lambda **p: {b.name for b in service.list_buckets(params=p).buckets}
    assert bucket.bucket_name in names(**{"tag-key": "team", "tag-value": "storage"})
    assert other.bucket_name not in names(**{"tag-key": "team", "tag-value": "storage"})
    assert {bucket.bucket_name, other.bucket_name} <= names(**{"tag-key": "team"})
    assert other.bucket_name not in names(**{"tag-key": "env"})
    # Only the named keys, then all.
    bucket.delete_bucket_tagging(params={"tagging": "env,tier"})
    assert bucket.get_bucket_tagging().tag_set.tagging_rule == {"team": "storage"}
    bucket.delete_bucket_tagging()
    assert bucket.get_bucket_tagging().tag_set.tagging_rule == {}
    # Bucket limits: reserved prefixes, more than 20.
    for pairs in [[("Aliyun-x", "v")], [("acs:x", "v")], [(f"k{i}", "v") for i in range(21)]]:
        r = raw_request(server, "PUT", bucket.bucket_name, params={"tagging": ""}, data=tags_xml(pairs))
        assert r.status_code == 400 and "<Code>InvalidTag</Code>" in r.text, r.text
    assert bucket.get_bucket_tagging().tag_set.tagging_rule == {}
    other.delete_bucket()


def test_v2_sdk_object_tagging(v2client, bucket):
    name = bucket.bucket_name
    v2client.put_object(oss.PutObjectRequest(bucket=name, key="v2", body=b"x", tagging="a=b"))
    got = v2client.get_object_tagging(oss.GetObjectTaggingRequest(bucket=name, key="v2"))
    assert [(t.key, t.value) for t in got.tag_set.tags] == [("a", "b")]
    v2client.put_object_tagging(oss.PutObjectTaggingRequest(
        bucket=name, key="v2", tagging=oss.Tagging(tag_set=oss.TagSet(tags=[oss.Tag(key="x", value="y")]))))
    head = v2client.head_object(oss.HeadObjectRequest(bucket=name, key="v2"))
    assert head.tagging_count == 1
    v2client.delete_object_tagging(oss.DeleteObjectTaggingRequest(bucket=name, key="v2"))
    got = v2client.get_object_tagging(oss.GetObjectTaggingRequest(bucket=name, key="v2"))
    assert not got.tag_set or not got.tag_set.tags


def test_s3_tagging(server):
    s3 = s3client(server)
    name = new_name("s3t")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="o", Body=b"x", Tagging="a=1&b=two%20words")
    assert s3.get_object(Bucket=name, Key="o")["TagCount"] == 2
    got = s3.get_object_tagging(Bucket=name, Key="o")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in got) == [("a", "1"), ("b", "two words")]
    s3.put_object_tagging(Bucket=name, Key="o", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_object_tagging(Bucket=name, Key="o")["TagSet"] == [{"Key": "k", "Value": "v"}]
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=name, Key="o",
                              Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]})
    assert e.value.response["Error"]["Code"] == "InvalidTag"
    s3.copy_object(Bucket=name, Key="c", CopySource={"Bucket": name, "Key": "o"},
                   TaggingDirective="REPLACE", Tagging="z=9")
    assert s3.get_object_tagging(Bucket=name, Key="c")["TagSet"] == [{"Key": "z", "Value": "9"}]
    up = s3.create_multipart_upload(Bucket=name, Key="m", Tagging="stage=mp")["UploadId"]
    etag = s3.upload_part(Bucket=name, Key="m", UploadId=up, PartNumber=1, Body=b"p")["ETag"]
    s3.complete_multipart_upload(Bucket=name, Key="m", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object_tagging(Bucket=name, Key="m")["TagSet"] == [{"Key": "stage", "Value": "mp"}]
    s3.delete_object_tagging(Bucket=name, Key="o")
    assert s3.get_object_tagging(Bucket=name, Key="o")["TagSet"] == []
    assert "TagCount" not in s3.head_object(Bucket=name, Key="o")
    # Bucket tags: none is NoSuchTagSet (404), as on S3.
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=name)
    assert e.value.response["Error"]["Code"] == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "team", "Value": "s3"}]})
    assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "team", "Value": "s3"}]
    s3.delete_bucket_tagging(Bucket=name)
    with pytest.raises(ClientError):
        s3.get_bucket_tagging(Bucket=name)


def test_tagging_bodies_checked(server, bucket):
    import base64
    import hashlib
    bucket.put_object("md5", b"x")
    body = tags_xml([("a", "b")])
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    r = raw_request(server, "PUT", bucket.bucket_name, "md5", params={"tagging": ""}, data=body,
                    headers={"Content-MD5": wrong})
    assert r.status_code == 400 and "<Code>InvalidDigest</Code>" in r.text, r.text
    assert bucket.get_object_tagging("md5").tag_set.tagging_rule == {}
    # A control character could not be sent back in XML: refused.
    r = raw_request(server, "PUT", bucket.bucket_name, params={"tagging": ""},
                    data=b"<Tagging><TagSet><Tag><Key>k</Key><Value>a&#1;b</Value></Tag></TagSet></Tagging>")
    assert r.status_code == 400 and "<Code>InvalidTag</Code>" in r.text, r.text
