"""GetBucketStat: counters kept by each write's own transaction, compared with a full listing
after concurrent mixed traffic (runs on the embedded store and on PostgreSQL)."""
import random
from concurrent.futures import ThreadPoolExecutor

import oss2
from oss2.models import PartInfo

from conftest import REGION, new_name

CLASSES = ["Standard", "IA", "Archive", "ColdArchive"]


def traffic(bucket, worker):
    rnd = random.Random(worker)
    for i in range(25):
        key = f"k{rnd.randrange(12)}"
        action = rnd.random()
        if action < 0.45:
            size = rnd.choice([0, 10, 3000, 20_000, 70_000])
            bucket.put_object(key, b"x" * size, headers={"x-oss-storage-class": rnd.choice(CLASSES)})
        elif action < 0.6:
            bucket.delete_object(key)
        else:
            mp = f"mp{worker}-{i}"
            up = bucket.init_multipart_upload(mp, headers={"x-oss-storage-class": rnd.choice(CLASSES)}).upload_id
            parts = [bucket.upload_part(mp, up, n, b"p" * (102_400 if n < 3 else 77)) for n in (1, 2, 3)]
            bucket.upload_part(mp, up, 2, b"q" * 102_400)  # replaces part 2
            end = rnd.random()
            if end < 0.4:
                etags = [parts[0].etag, bucket.list_parts(mp, up).parts[1].etag, parts[2].etag]
                bucket.complete_multipart_upload(mp, up, [PartInfo(n, e) for n, e in zip((1, 2, 3), etags)])
            elif end < 0.7:
                bucket.abort_multipart_upload(mp, up)
            # else: left open


def test_bucket_stat_matches_a_full_listing(bucket):
    empty = bucket.get_bucket_stat()
    assert (empty.storage_size_in_bytes, empty.object_count, empty.multi_part_upload_count) == (0, 0, 0)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda w: traffic(bucket, w), range(8)))
    objects = list(oss2.ObjectIterator(bucket))
    uploads = list(oss2.MultipartUploadIterator(bucket))
    parts = [p for u in uploads for p in oss2.PartIterator(bucket, u.key, u.upload_id)]
    stat = bucket.get_bucket_stat()
    assert stat.object_count == len(objects)
    assert stat.storage_size_in_bytes == sum(o.size for o in objects)
    assert stat.multi_part_upload_count == len(uploads)
    for cls, count_attr, storage_attr in [
        ("Standard", "standard_object_count", "standard_storage"),
        ("IA", "infrequent_access_object_count", "infrequent_access_real_storage"),
        ("Archive", "archive_object_count", "archive_real_storage"),
        ("ColdArchive", "cold_archive_object_count", "cold_archive_real_storage"),
    ]:
        mine = [o for o in objects if o.storage_class == cls]
        assert getattr(stat, count_attr) == len(mine), cls
        assert getattr(stat, storage_attr) == sum(o.size for o in mine), cls
    resp = bucket.get_bucket_stat()
    assert resp.multi_part_upload_count == len(uploads)
    raw = bucket._Bucket__do_bucket("GET", params={"stat": ""}).read().decode()
    assert f"<MultipartPartCount>{len(parts)}</MultipartPartCount>" in raw
    assert f"<MultipartPartStorage>{sum(p.size for p in parts)}</MultipartPartStorage>" in raw
    # Emptied, it counts nothing, and the bucket can go.
    for u in uploads:
        bucket.abort_multipart_upload(u.key, u.upload_id)
    for o in objects:
        bucket.delete_object(o.key)
    done = bucket.get_bucket_stat()
    assert (done.storage_size_in_bytes, done.object_count, done.multi_part_upload_count) == (0, 0, 0)
    assert "<MultipartPartCount>0</MultipartPartCount>" in bucket._Bucket__do_bucket(
        "GET", params={"stat": ""}).read().decode()


def test_concurrent_completes_of_many_part_uploads(bucket_v1):
    """Completes in one bucket and class side by side, each taking many parts out of the
    statistics: none may fail on the statistics rows (on PostgreSQL, writers that locked shard
    rows in different orders deadlocked, and after retries the client got 503)."""
    import threading
    n, parts = 16, 30
    ups = []
    for i in range(n):
        key = f"mp{i}"
        up = bucket_v1.init_multipart_upload(key).upload_id
        etag = [bucket_v1.upload_part(key, up, p, b"x").etag for p in range(1, parts + 1)][0]
        ups.append((key, up, etag))
    barrier, errors = threading.Barrier(n), []

    def complete(key, up, etag):
        barrier.wait()
        try:
            bucket_v1.complete_multipart_upload(key, up, [PartInfo(1, etag)])
        except oss2.exceptions.OssError as e:
            errors.append((key, e.status))

    threads = [threading.Thread(target=complete, args=u) for u in ups]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    stat = bucket_v1.get_bucket_stat()
    assert (stat.object_count, stat.multi_part_upload_count) == (n, 0)
    raw = bucket_v1._Bucket__do_bucket("GET", params={"stat": ""}).read().decode()
    assert "<MultipartPartCount>0</MultipartPartCount>" in raw
