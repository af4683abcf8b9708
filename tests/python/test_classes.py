"""Storage classes and archive restores (the session server restores in 1 s)."""
import time

import oss2
import pytest
import alibabacloud_oss_v2 as oss
from botocore.exceptions import ClientError
from oss2.models import BucketCreateConfig, PartInfo, RestoreConfiguration, RestoreJobParameters

from conftest import REGION, new_name, raw_request
from test_s3 import s3client

RESTORE_WAIT = 2.5  # the server's --restore-delay-secs is 1


def oss_error(call):
    with pytest.raises(oss2.exceptions.ServerError) as e:
        call()
    return e.value.status, e.value.code


def test_bucket_class_is_the_default_for_new_objects(bucket):
    ia = oss2.Bucket(bucket.auth, bucket.endpoint, new_name("ia"), region=REGION)
    ia.create_bucket(oss2.BUCKET_ACL_PRIVATE, BucketCreateConfig(oss2.BUCKET_STORAGE_CLASS_IA))
    assert ia.get_bucket_info().storage_class == "IA"
    ia.put_object("o", b"x")
    assert ia.head_object("o").headers["x-oss-storage-class"] == "IA"
    ia.put_object("s", b"x", headers={"x-oss-storage-class": "Standard"})
    assert ia.head_object("s").headers["x-oss-storage-class"] == "Standard"
    listed = {o.key: o.storage_class for o in ia.list_objects().object_list}
    assert listed == {"o": "IA", "s": "Standard"}
    ia.delete_object("o")
    ia.delete_object("s")
    ia.delete_bucket()


def test_archive_needs_a_restore(bucket):
    bucket.put_object("cold", b"frozen bytes", headers={"x-oss-storage-class": "Archive"})
    head = bucket.head_object("cold")
    assert head.headers["x-oss-storage-class"] == "Archive" and "x-oss-restore" not in head.headers
    assert oss_error(lambda: bucket.get_object("cold")) == (403, "InvalidObjectState")
    assert oss_error(lambda: bucket.copy_object(bucket.bucket_name, "cold", "copy")) == (403, "InvalidObjectState")
    assert bucket.restore_object("cold").status == 202
    assert bucket.head_object("cold").headers["x-oss-restore"] == 'ongoing-request="true"'
    listed = [o for o in bucket.list_objects(prefix="cold").object_list if o.key == "cold"]
    assert listed[0].restore_info == 'ongoing-request="true"'
    assert oss_error(lambda: bucket.restore_object("cold")) == (409, "RestoreAlreadyInProgress")
    assert oss_error(lambda: bucket.get_object("cold")) == (403, "InvalidObjectState")
    time.sleep(RESTORE_WAIT)
    restore = bucket.head_object("cold").headers["x-oss-restore"]
    assert restore.startswith('ongoing-request="false", expiry-date="') and restore.endswith('GMT"')
    assert bucket.get_object("cold").read() == b"frozen bytes"
    assert bucket.restore_object("cold").status == 200  # extends a finished restore
    # A restored object can be copied, to any class.
    bucket.copy_object(bucket.bucket_name, "cold", "thawed", headers={"x-oss-storage-class": "Standard"})
    assert bucket.head_object("thawed").headers["x-oss-storage-class"] == "Standard"
    assert bucket.get_object("thawed").read() == b"frozen bytes"


def test_restore_rules(bucket):
    bucket.put_object("std", b"x")
    assert oss_error(lambda: bucket.restore_object("std")) == (400, "OperationNotSupported")
    assert oss_error(lambda: bucket.restore_object("missing")) == (404, "NoSuchKey")
    bucket.put_object("arch", b"x", headers={"x-oss-storage-class": "Archive"})
    # Archive has no tiers; days 1..7.
    cfg = RestoreConfiguration(days=2, job_parameters=RestoreJobParameters(oss2.models.RESTORE_TIER_BULK))
    assert oss_error(lambda: bucket.restore_object("arch", input=cfg)) == (400, "MalformedXML")
    assert oss_error(lambda: bucket.restore_object("arch", input=RestoreConfiguration(days=8))) == \
        (400, "InvalidArgument")
    assert "x-oss-restore" not in bucket.head_object("arch").headers
    bucket.put_object("coldarch", b"x", headers={"x-oss-storage-class": "ColdArchive"})
    bad = RestoreConfiguration(days=2, job_parameters=RestoreJobParameters("wrong-tier"))
    assert oss_error(lambda: bucket.restore_object("coldarch", input=bad)) == (400, "InvalidArgument")
    r = bucket.restore_object("coldarch", input=cfg)
    assert r.status == 202 and r.headers["x-oss-object-restore-priority"] == "Bulk"
    # Unknown classes are refused and store nothing.
    assert oss_error(lambda: bucket.put_object("never", b"x", headers={"x-oss-storage-class": "Cold"})) == \
        (400, "InvalidArgument")
    assert not bucket.object_exists("never")


def test_multipart_and_copy_classes(bucket):
    up = bucket.init_multipart_upload("mp", headers={"x-oss-storage-class": "ColdArchive"}).upload_id
    p = bucket.upload_part("mp", up, 1, b"part")
    bucket.complete_multipart_upload("mp", up, [PartInfo(1, p.etag)])
    assert bucket.head_object("mp").headers["x-oss-storage-class"] == "ColdArchive"
    # Changing an object's class: a copy onto itself.
    bucket.put_object("move", b"x")
    bucket.copy_object(bucket.bucket_name, "move", "move", headers={"x-oss-storage-class": "IA"})
    assert bucket.head_object("move").headers["x-oss-storage-class"] == "IA"


def test_v2_sdk_restore_and_clean(v2client, bucket):
    name = bucket.bucket_name
    v2client.put_object(oss.PutObjectRequest(bucket=name, key="a", body=b"x", storage_class="Archive"))
    with pytest.raises(Exception) as e:
        v2client.clean_restored_object(oss.CleanRestoredObjectRequest(bucket=name, key="a"))
    assert "ArchiveRestoreFileStale" in str(e.value)
    r = v2client.restore_object(oss.RestoreObjectRequest(bucket=name, key="a"))
    assert r.status_code == 202
    with pytest.raises(Exception) as e:
        v2client.clean_restored_object(oss.CleanRestoredObjectRequest(bucket=name, key="a"))
    assert "ArchiveRestoreNotFinished" in str(e.value)
    time.sleep(RESTORE_WAIT)
    v2client.clean_restored_object(oss.CleanRestoredObjectRequest(bucket=name, key="a"))
    head = v2client.head_object(oss.HeadObjectRequest(bucket=name, key="a"))
    assert head.restore is None and head.storage_class == "Archive"


def test_s3_classes_and_restore(server):
    s3 = s3client(server)
    name = new_name("s3c")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="g", Body=b"glacier", StorageClass="GLACIER")
    assert s3.head_object(Bucket=name, Key="g")["StorageClass"] == "GLACIER"
    listed = s3.list_objects_v2(Bucket=name)["Contents"]
    assert listed[0]["StorageClass"] == "GLACIER"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=name, Key="g")
    assert e.value.response["Error"]["Code"] == "InvalidObjectState"
    r = s3.restore_object(Bucket=name, Key="g",
                          RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Standard"}})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert s3.head_object(Bucket=name, Key="g")["Restore"] == 'ongoing-request="true"'
    with pytest.raises(ClientError) as e:
        s3.restore_object(Bucket=name, Key="g", RestoreRequest={"Days": 1})
    assert e.value.response["Error"]["Code"] == "RestoreAlreadyInProgress"
    time.sleep(RESTORE_WAIT)
    assert s3.get_object(Bucket=name, Key="g")["Body"].read() == b"glacier"
    s3.put_object(Bucket=name, Key="s", Body=b"x", StorageClass="STANDARD_IA")
    assert s3.head_object(Bucket=name, Key="s")["StorageClass"] == "STANDARD_IA"
    with pytest.raises(ClientError) as e:
        s3.restore_object(Bucket=name, Key="s", RestoreRequest={"Days": 1})
    assert e.value.response["Error"]["Code"] == "InvalidObjectState"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=name, Key="n", Body=b"x", StorageClass="INTELLIGENT_TIERING")
    assert e.value.response["Error"]["Code"] == "InvalidStorageClass"


def test_restore_details_after_review(server, bucket):
    name = bucket.bucket_name
    # A second restore extends a finished one and never shortens it.
    bucket.put_object("long", b"x", headers={"x-oss-storage-class": "ColdArchive"})
    assert bucket.restore_object("long", input=RestoreConfiguration(days=30)).status == 202
    time.sleep(RESTORE_WAIT)
    before = bucket.head_object("long").headers["x-oss-restore"]
    assert bucket.restore_object("long", input=RestoreConfiguration(days=1)).status == 200
    assert bucket.head_object("long").headers["x-oss-restore"] == before
    # CleanRestoredObject signed with V1 (its sub-resource is signed).
    bucket.put_object("v1clean", b"x", headers={"x-oss-storage-class": "Archive"})
    r = raw_request(server, "POST", name, "v1clean", params={"cleanRestoredObject": ""})
    assert r.status_code == 409 and "<Code>ArchiveRestoreFileStale</Code>" in r.text, r.text


def test_s3_restore_and_copy_details(server):
    s3 = s3client(server)
    name = new_name("s3d")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="deep", Body=b"x", StorageClass="DEEP_ARCHIVE")
    r = s3.restore_object(Bucket=name, Key="deep",
                          RestoreRequest={"Days": 30, "GlacierJobParameters": {"Tier": "Bulk"}})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 202
    s3.put_object(Bucket=name, Key="g30", Body=b"x", StorageClass="GLACIER")
    assert s3.restore_object(Bucket=name, Key="g30", RestoreRequest={"Days": 30})[
        "ResponseMetadata"]["HTTPStatusCode"] == 202
    # Changing the class with a copy onto itself is allowed without REPLACE.
    s3.put_object(Bucket=name, Key="self", Body=b"x")
    s3.copy_object(Bucket=name, Key="self", CopySource={"Bucket": name, "Key": "self"}, StorageClass="STANDARD_IA")
    assert s3.head_object(Bucket=name, Key="self")["StorageClass"] == "STANDARD_IA"
