"""The SDKs' transfer helpers: oss2 resumable upload/download, the v2 SDK's Uploader and Downloader."""
import os

import oss2
import pytest
import alibabacloud_oss_v2 as oss

from conftest import new_name


def test_oss2_resumable_upload_interrupted_and_resumed(bucket_v1, tmpfile, tmp_path, monkeypatch):
    path = tmpfile(3 * 1024 * 1024 + 777)
    store = oss2.ResumableStore(root=str(tmp_path), dir="ckpt")
    part_size = 256 * 1024
    total_parts = -(-os.path.getsize(path) // part_size)
    calls = []
    real_upload_part = oss2.Bucket.upload_part

    def failing_upload_part(self, key, upload_id, part_number, data, *a, **kw):
        calls.append(part_number)
        if len(calls) > 6:
            raise oss2.exceptions.RequestError(Exception("simulated network failure"))
        return real_upload_part(self, key, upload_id, part_number, data, *a, **kw)

    monkeypatch.setattr(oss2.Bucket, "upload_part", failing_upload_part)
    with pytest.raises(Exception):
        oss2.resumable_upload(bucket_v1, "resumed.bin", path, store=store, multipart_threshold=part_size,
                              part_size=part_size, num_threads=4)
    # The interrupted upload is still there, with some parts.
    uploads = bucket_v1.list_multipart_uploads().upload_list
    assert [u.key for u in uploads] == ["resumed.bin"]
    done_before = len(bucket_v1.list_parts("resumed.bin", uploads[0].upload_id).parts)
    assert 0 < done_before < total_parts

    calls.clear()
    monkeypatch.setattr(oss2.Bucket, "upload_part", real_upload_part)
    counted = []

    def counting_upload_part(self, *a, **kw):
        counted.append(1)
        return real_upload_part(self, *a, **kw)

    monkeypatch.setattr(oss2.Bucket, "upload_part", counting_upload_part)
    oss2.resumable_upload(bucket_v1, "resumed.bin", path, store=store, multipart_threshold=part_size,
                          part_size=part_size, num_threads=4)
    # Only the missing parts went up the second time.
    assert len(counted) == total_parts - done_before
    assert bucket_v1.get_object("resumed.bin").read() == open(path, "rb").read()
    assert bucket_v1.list_multipart_uploads().upload_list == []


def test_oss2_resumable_download(bucket_v1, tmpfile, tmp_path):
    path = tmpfile(2 * 1024 * 1024 + 3)
    bucket_v1.put_object_from_file("dl.bin", path)
    out = str(tmp_path / "out.bin")
    oss2.resumable_download(bucket_v1, "dl.bin", out, multiget_threshold=100 * 1024, part_size=100 * 1024,
                            num_threads=4, store=oss2.ResumableDownloadStore(root=str(tmp_path)))
    assert open(out, "rb").read() == open(path, "rb").read()


def test_v2_uploader_and_downloader(v2client, tmpfile, tmp_path):
    b = new_name()
    v2client.put_bucket(oss.PutBucketRequest(bucket=b))
    path = tmpfile(7 * 1024 * 1024 + 5)
    uploader = v2client.uploader(part_size=1024 * 1024, parallel_num=4)
    result = uploader.upload_file(oss.PutObjectRequest(bucket=b, key="v2/big.bin"), filepath=path)
    assert result.upload_id  # went multipart
    # The Uploader compares its combined CRC with Complete's; the same must hold on HEAD.
    head = v2client.head_object(oss.HeadObjectRequest(bucket=b, key="v2/big.bin"))
    assert head.hash_crc64 == result.hash_crc64
    assert head.content_length == os.path.getsize(path)
    out = str(tmp_path / "v2-out.bin")
    downloader = v2client.downloader(part_size=1024 * 1024, parallel_num=4)
    downloader.download_file(oss.GetObjectRequest(bucket=b, key="v2/big.bin"), filepath=out)
    assert open(out, "rb").read() == open(path, "rb").read()


def test_v2_uploader_resumes_from_checkpoint(v2client, tmpfile, tmp_path, monkeypatch):
    b = new_name()
    v2client.put_bucket(oss.PutBucketRequest(bucket=b))
    part = 1024 * 1024
    path = tmpfile(6 * part + 99)
    key = "ckpt.bin"
    real = oss.Client.upload_part
    calls = []

    def flaky(self, request, **kw):
        calls.append(request.part_number)
        if len(calls) > 3:
            raise RuntimeError("simulated crash")
        return real(self, request, **kw)

    monkeypatch.setattr(oss.Client, "upload_part", flaky)
    uploader = v2client.uploader(part_size=part, parallel_num=1, enable_checkpoint=True,
                                 checkpoint_dir=str(tmp_path))
    with pytest.raises(Exception):
        uploader.upload_file(oss.PutObjectRequest(bucket=b, key=key), filepath=path)
    calls.clear()
    monkeypatch.setattr(oss.Client, "upload_part", lambda self, request, **kw: (calls.append(request.part_number), real(self, request, **kw))[1])
    result = uploader.upload_file(oss.PutObjectRequest(bucket=b, key=key), filepath=path)
    # Parts 1-3 were confirmed with ListParts (size and HashCrc64ecma) and not sent again;
    # the final CRC check, which combines their listed CRCs, passed.
    assert sorted(calls) == [4, 5, 6, 7]
    got = v2client.get_object(oss.GetObjectRequest(bucket=b, key=key)).body.read()
    assert got == open(path, "rb").read()
    assert result.hash_crc64 == v2client.head_object(oss.HeadObjectRequest(bucket=b, key=key)).hash_crc64
