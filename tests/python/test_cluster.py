"""Several gateways over one PostgreSQL database and one data directory, driven with oss2.

scripts/test runs these in its PostgreSQL pass (KURA_TEST_PG_URL); on the embedded store, which
one process owns, they are skipped (but the start-up failure test runs in both passes).
"""
import hashlib
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time

import oss2
import pytest

from conftest import AK, SK, ROOT, Gateway, new_name, new_pg_database

needs_pg = pytest.mark.skipif(not os.environ.get("KURA_TEST_PG_URL"),
                              reason="needs PostgreSQL (scripts/test starts one)")


@pytest.fixture
def cluster():
    """Starts gateways over one fresh database and one data directory: cluster(*flags)."""
    data = tempfile.mkdtemp(prefix="kura-cluster-")
    url = new_pg_database()
    started = []

    def start(*extra):
        g = Gateway(data, url, *extra)
        started.append(g)
        return g

    start.data_dir = data
    start.url = url
    yield start
    for g in started:
        g.stop()
    shutil.rmtree(data, ignore_errors=True)


def sql(url, query):
    """One value from the test database, through psql."""
    out = subprocess.run([os.path.join(os.environ["KURA_TEST_PG_BIN"], "psql"), "-At", "-d", url, "-c", query],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def blob_files(data_dir):
    out = []
    for dirpath, _, files in os.walk(os.path.join(data_dir, "blobs")):
        out.extend(os.path.join(dirpath, f) for f in files)
    return out


def tmp_files(data_dir):
    out = []
    for dirpath, _, files in os.walk(os.path.join(data_dir, "tmp")):
        out.extend(os.path.join(dirpath, f) for f in files)
    return out


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def parts_view(bucket, key, upload_id):
    return [(p.part_number, p.etag, p.size) for p in bucket.list_parts(key, upload_id).parts]


@needs_pg
def test_parts_on_two_gateways_completed_on_a_third(cluster):
    a, b, c = cluster(), cluster(), cluster()
    name = new_name()
    a.bucket(name).create_bucket()
    key = "spread/object"
    upload_id = a.bucket(name).init_multipart_upload(key).upload_id
    datas = [os.urandom(100 * 1024 + i) for i in range(7)] + [os.urandom(999)]
    infos = []
    for n, data in enumerate(datas, 1):
        gw = a if n % 2 else b
        infos.append(oss2.models.PartInfo(n, gw.bucket(name).upload_part(key, upload_id, n, data).etag))
    expected = [(i.part_number, i.etag, len(datas[i.part_number - 1])) for i in infos]
    for gw in (a, b, c):
        assert parts_view(gw.bucket(name), key, upload_id) == expected
        uploads = gw.bucket(name).list_multipart_uploads()
        assert [(u.key, u.upload_id) for u in uploads.upload_list] == [(key, upload_id)]
    # Paging hops gateways: the marker from one is good on another.
    page1 = a.bucket(name).list_parts(key, upload_id, max_parts=3)
    page2 = b.bucket(name).list_parts(key, upload_id, marker=page1.next_marker, max_parts=3)
    page3 = c.bucket(name).list_parts(key, upload_id, marker=page2.next_marker, max_parts=3)
    assert page1.is_truncated and page2.is_truncated and not page3.is_truncated
    assert [p.part_number for p in page1.parts + page2.parts + page3.parts] == list(range(1, 9))

    result = c.bucket(name).complete_multipart_upload(key, upload_id, infos)
    body = a.bucket(name).get_object(key).read()
    assert body == b"".join(datas)
    assert b.bucket(name).head_object(key).etag == result.etag
    for gw in (a, b, c):
        with pytest.raises(oss2.exceptions.NoSuchUpload):
            gw.bucket(name).list_parts(key, upload_id)
        assert gw.bucket(name).list_multipart_uploads().upload_list == []


@needs_pg
def test_concurrent_completes_on_two_gateways_make_one_whole_object(cluster):
    a, b = cluster(), cluster()
    name = new_name()
    a.bucket(name).create_bucket()
    for round_ in range(8):
        key = f"race-{round_}"
        upload_id = a.bucket(name).init_multipart_upload(key).upload_id
        datas = [os.urandom(100 * 1024) for _ in range(3)]
        infos = [oss2.models.PartInfo(n, a.bucket(name).upload_part(key, upload_id, n, d).etag)
                 for n, d in enumerate(datas, 1)]
        # Different part lists: whichever commits first decides; the other list is refused,
        # and the object is exactly the winner's parts, never a mix.
        lists = {"a": infos, "b": infos[:2]}
        gateways = {"a": a, "b": b}
        results = {}
        barrier = threading.Barrier(2)

        def complete(which):
            barrier.wait()
            try:
                r = gateways[which].bucket(name).complete_multipart_upload(key, upload_id, lists[which])
                results[which] = ("ok", r.etag)
            except oss2.exceptions.OssError as e:
                results[which] = (e.code, None)

        threads = [threading.Thread(target=complete, args=(w,)) for w in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [w for w, (code, _) in results.items() if code == "ok"]
        assert len(winners) == 1, results
        loser = "b" if winners[0] == "a" else "a"
        assert results[loser][0] == "NoSuchUpload", results
        body = b.bucket(name).get_object(key).read()
        assert body == b"".join(datas[: len(lists[winners[0]])])
        assert a.bucket(name).head_object(key).etag == results[winners[0]][1]

    # The same list on both: both get the same answer (the loser's is the idempotent retry).
    key = "same-list"
    upload_id = a.bucket(name).init_multipart_upload(key).upload_id
    datas = [os.urandom(100 * 1024) for _ in range(2)]
    infos = [oss2.models.PartInfo(n, b.bucket(name).upload_part(key, upload_id, n, d).etag)
             for n, d in enumerate(datas, 1)]
    etags = []
    barrier = threading.Barrier(2)

    def complete_same(gw):
        barrier.wait()
        etags.append(gw.bucket(name).complete_multipart_upload(key, upload_id, infos).etag)

    threads = [threading.Thread(target=complete_same, args=(gw,)) for gw in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(etags) == 2 and etags[0] == etags[1]
    assert a.bucket(name).get_object(key).read() == b"".join(datas)


@needs_pg
def test_racing_overwrites_leave_one_object_and_no_stray_blob(cluster):
    a = cluster("--deletion-grace-secs", "0")
    b = cluster("--deletion-grace-secs", "0")
    name = new_name()
    a.bucket(name).create_bucket()
    written = set()
    lock = threading.Lock()

    def writer(gw, tag):
        for i in range(25):
            data = f"{tag}-{i}-".encode() + os.urandom(64)
            gw.bucket(name).put_object("hot", data)
            with lock:
                written.add(data)

    threads = [threading.Thread(target=writer, args=(gw, f"{gw.port}-{t}")) for gw in (a, b) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = a.bucket(name).get_object("hot").read()
    assert final in written
    assert b.bucket(name).get_object("hot").read() == final
    # Every replaced blob was queued for deletion: the leader's sweep leaves exactly one file.
    wait_for(lambda: len(blob_files(cluster.data_dir)) == 1, 20, "replaced blobs to be swept")


@needs_pg
def test_a_get_on_one_gateway_survives_a_delete_on_another(cluster):
    a = cluster("--deletion-grace-secs", "1")
    b = cluster("--deletion-grace-secs", "1")
    wait_for(lambda: sql(cluster.url, "SELECT holder FROM leader") in (a.gateway_id, b.gateway_id), 20,
             "a sweeper leader")
    leader_id = sql(cluster.url, "SELECT holder FROM leader")
    # Read on the gateway that does not sweep, so only the published lease can protect the read.
    reader, deleter = (b, a) if leader_id == a.gateway_id else (a, b)
    name = new_name()
    reader.bucket(name).create_bucket()
    key = "long-read"
    upload_id = reader.bucket(name).init_multipart_upload(key).upload_id
    # Many part files: the read opens each only when it gets there, after the delete.
    datas = [os.urandom(2 * 1024 * 1024) for _ in range(16)]
    infos = [oss2.models.PartInfo(n, reader.bucket(name).upload_part(key, upload_id, n, d).etag)
             for n, d in enumerate(datas, 1)]
    reader.bucket(name).complete_multipart_upload(key, upload_id, infos)
    assert len(blob_files(cluster.data_dir)) == 16

    stream = reader.bucket(name).get_object(key)
    first = stream.read(1024 * 1024)
    deleter.bucket(name).delete_object(key)
    with pytest.raises(oss2.exceptions.NoSuchKey):
        deleter.bucket(name).get_object(key)
    # Past the deletion grace and more than one sweep of the leader.
    time.sleep(12)
    rest = stream.read()
    assert hashlib.md5(first + rest).digest() == hashlib.md5(b"".join(datas)).digest()
    # Once the read is over, the leader does delete them: the lease was what kept them.
    wait_for(lambda: blob_files(cluster.data_dir) == [], 30, "the object's blobs to be deleted")


def _sign_v1(method, resource, headers):
    import base64
    import hmac
    oss_headers = "".join(f"{k.lower()}:{v}\n" for k, v in sorted(headers.items()) if k.lower().startswith("x-oss-"))
    sts = "\n".join([method, "", headers.get("Content-Type", ""), headers["Date"], oss_headers + resource])
    return base64.b64encode(hmac.new(SK.encode(), sts.encode(), hashlib.sha1).digest()).decode()


@needs_pg
def test_gateway_killed_mid_upload_the_client_finishes_on_another(cluster):
    import email.utils
    import requests

    # A short deletion grace makes the heartbeat (four lease periods and 2 s) short too.
    a = cluster("--deletion-grace-secs", "1")
    b = cluster("--deletion-grace-secs", "1")
    name = new_name()
    a.bucket(name).create_bucket()
    key = "survives-a-crash"
    upload_id = a.bucket(name).init_multipart_upload(key).upload_id
    datas = [os.urandom(1024 * 1024) for _ in range(6)]
    acked = {}
    for n in (1, 2, 3):
        acked[n] = a.bucket(name).upload_part(key, upload_id, n, datas[n - 1]).etag
    # Part 4 is mid-body on A when A dies: its temporary file stays behind.
    hold = threading.Event()

    def slow_body():
        # More than one write batch (512 KiB), so the file exists on disk.
        yield datas[3][: 768 * 1024]
        hold.wait(30)
        yield datas[3][768 * 1024:]

    date = email.utils.formatdate(usegmt=True)
    resource = f"/{name}/{key}?partNumber=4&uploadId={upload_id}"
    headers = {"Date": date}
    headers["Authorization"] = f"OSS {AK}:{_sign_v1('PUT', resource, headers)}"

    def send_part4():
        try:
            requests.put(f"{a.endpoint}/{name}/{key}", params={"partNumber": "4", "uploadId": upload_id},
                         headers=headers, data=slow_body(), timeout=30)
        except requests.RequestException:
            pass

    sender = threading.Thread(target=send_part4)
    sender.start()
    wait_for(lambda: tmp_files(cluster.data_dir), 10, "part 4's temporary file")
    a.kill()
    hold.set()
    sender.join()
    assert tmp_files(cluster.data_dir), "the killed gateway left its temporary file"

    # The client carries on with B: acknowledged parts are all there.
    view = parts_view(b.bucket(name), key, upload_id)
    assert [(n, e) for n, e, _ in view] == sorted(acked.items())
    for n in (4, 5, 6):
        acked[n] = b.bucket(name).upload_part(key, upload_id, n, datas[n - 1]).etag
    # Once the dead gateway's heartbeat has lapsed, a new gateway sweeps at start and takes
    # what it left: its temporary directory and any blob file no row refers to.
    time.sleep(4)
    c = cluster("--shared-file-grace-secs", "1")
    wait_for(lambda: tmp_files(cluster.data_dir) == [], 20, "the dead gateway's temporary file to be swept")
    infos = [oss2.models.PartInfo(n, e) for n, e in sorted(acked.items())]
    c.bucket(name).complete_multipart_upload(key, upload_id, infos)
    assert b.bucket(name).get_object(key).read() == b"".join(datas)
    assert len(blob_files(cluster.data_dir)) == 6


@needs_pg
def test_postgres_restart_under_traffic_loses_no_acknowledged_write(cluster):
    a, b = cluster(), cluster()
    name = new_name()
    a.bucket(name).create_bucket()
    acked = {}
    failures = []
    stop = threading.Event()
    lock = threading.Lock()

    def writer(gw, wid):
        bk = gw.bucket(name)
        i = 0
        while not stop.is_set():
            key = f"w{wid}/{i}"
            data = os.urandom(random.randint(1, 64 * 1024))
            try:
                bk.put_object(key, data)
                with lock:
                    acked[key] = hashlib.md5(data).hexdigest()
            except oss2.exceptions.ServerError as e:
                failures.append((e.status, e.code))
            except oss2.exceptions.RequestError:
                failures.append(("connection", ""))
            i += 1

    threads = [threading.Thread(target=writer, args=(gw, f"{n}{gw.port}")) for gw in (a, b) for n in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    before = len(acked)
    subprocess.run([os.path.join(ROOT, "scripts", "pg-temp"), "restart", os.environ["KURA_TEST_PG_DIR"]],
                   check=True, capture_output=True)
    restarted = time.time()
    # Both gateways recover on their own, within seconds.
    for gw in (a, b):
        def works(gw=gw):
            try:
                gw.bucket(name).put_object("probe", b"x")
                return True
            except oss2.exceptions.OssError:
                return False
        wait_for(works, 15, "writes to work again after the database restart")
    recovered = time.time() - restarted
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    print(f"restart: {len(acked)} writes acknowledged, {len(failures)} refused {sorted(set(failures))}, recovered in {recovered:.2f} s")
    assert before > 0 and len(acked) > before
    assert all(status in (503, "connection") for status, _ in failures), failures
    assert recovered < 15
    for key, digest in acked.items():
        gw = a if hash(key) % 2 else b
        assert hashlib.md5(gw.bucket(name).get_object(key).read()).hexdigest() == digest, key


def test_unreachable_database_at_start_is_a_clear_error():
    binary = os.environ.get("KURA_BIN", os.path.join(ROOT, "target", "debug", "kura"))
    data = tempfile.mkdtemp(prefix="kura-nodb-")
    try:
        r = subprocess.run([binary, "serve", "--listen", "127.0.0.1:0", "--data", data,
                            "--access-key-id", AK, "--access-key-secret", SK,
                            "--meta", "postgres://kura:hunter2@127.0.0.1:1/kura"],
                           capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    assert r.returncode != 0
    assert "postgres://kura:***@127.0.0.1:1/kura" in r.stderr
    assert "hunter2" not in r.stderr + r.stdout


@pytest.mark.skipif(not os.environ.get("KURA_TEST_PG_CA"), reason="needs the test PostgreSQL with TLS")
def test_tls_to_the_database_is_verified_when_asked(cluster):
    kura = os.environ.get("KURA_BIN", os.path.join(ROOT, "target", "debug", "kura"))
    ca = os.environ["KURA_TEST_PG_CA"]
    verified = f"{cluster.url}?sslmode=verify-full&sslrootcert={ca}"
    ok = subprocess.run([kura, "meta", "migrate", "--meta", verified], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # The test CA is not among the public roots: without sslrootcert, verification fails.
    bad = subprocess.run([kura, "meta", "migrate", "--meta", f"{cluster.url}?sslmode=verify-full"],
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert "UnknownIssuer" in bad.stderr
    gw = cluster("--meta", verified)
    name = new_name()
    gw.bucket(name).create_bucket()
    gw.bucket(name).put_object("k", b"over tls")
    assert gw.bucket(name).get_object("k").read() == b"over tls"
    db = cluster.url.rsplit("/", 1)[1]
    encrypted = sql(cluster.url, "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                                 f"WHERE a.application_name = 'kura' AND a.datname = '{db}' AND s.ssl")
    assert int(encrypted) > 0


@needs_pg
def test_database_away_is_503_with_retry_after_in_both_dialects(cluster):
    import boto3
    import botocore.config
    import botocore.exceptions
    from conftest import raw_request

    gw = cluster()
    name = new_name()
    gw.bucket(name).create_bucket()
    gw.bucket(name).put_object("k", b"kept")
    s3 = boto3.client("s3", endpoint_url=gw.endpoint, aws_access_key_id=AK, aws_secret_access_key=SK,
                      region_name="us-east-1",
                      config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"},
                                                    s3={"addressing_style": "path"}))
    pg_temp = os.path.join(ROOT, "scripts", "pg-temp")
    subprocess.run([pg_temp, "pause", os.environ["KURA_TEST_PG_DIR"]], check=True, capture_output=True)
    try:
        r = raw_request(gw, "GET", name, "k")
        assert r.status_code == 503, r.text
        assert r.headers.get("Retry-After") == "1"
        assert "<Code>ServiceUnavailable</Code>" in r.text
        r = raw_request(gw, "PUT", name, "new", data=b"x" * 1000)
        assert r.status_code == 503, r.text
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.get_object(Bucket=name, Key="k")
        meta = e.value.response["ResponseMetadata"]
        assert meta["HTTPStatusCode"] == 503
        assert meta["HTTPHeaders"].get("retry-after") == "1"
        assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
    finally:
        subprocess.run([pg_temp, "resume", os.environ["KURA_TEST_PG_DIR"]], check=True, capture_output=True)

    def works():
        try:
            return gw.bucket(name).get_object("k").read() == b"kept"
        except oss2.exceptions.OssError:
            return False

    wait_for(works, 15, "reads to work again once the database is back")
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"kept"
    # The refused write left no object behind.
    with pytest.raises(oss2.exceptions.NoSuchKey):
        gw.bucket(name).get_object("new")


@needs_pg
def test_a_sweep_leaves_a_live_gateways_temporary_directory_alone(cluster):
    a = cluster()
    name = new_name()
    a.bucket(name).create_bucket()
    a.bucket(name).put_object("before", b"x")
    own = os.path.join(cluster.data_dir, "tmp", a.gateway_id)
    assert os.path.isdir(own)
    time.sleep(2.5)
    # A gateway starting with a short grace sweeps at once: A is alive (it publishes its
    # heartbeat), so its directory stays, and A keeps accepting uploads.
    cluster("--shared-file-grace-secs", "1")
    time.sleep(2)
    assert os.path.isdir(own)
    a.bucket(name).put_object("after", b"y" * 700_000)
    up = a.bucket(name).init_multipart_upload("mp").upload_id
    a.bucket(name).upload_part("mp", up, 1, b"z" * 1000)


@needs_pg
def test_concurrent_parts_of_a_sequential_upload_never_fail_with_500(cluster):
    a, b = cluster(), cluster()
    name = new_name()
    a.bucket(name).create_bucket()
    up = a.bucket(name).init_multipart_upload("seq", params={"sequential": ""}).upload_id
    results = {}
    barrier = threading.Barrier(12)

    def part(n):
        barrier.wait()
        gw = a if n % 2 else b
        try:
            gw.bucket(name).upload_part("seq", up, n, os.urandom(1000))
            results[n] = 200
        except oss2.exceptions.OssError as e:
            results[n] = (e.status, e.code)

    threads = [threading.Thread(target=part, args=(n,)) for n in range(1, 13)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.time() - started < 20
    assert results[1] == 200
    assert all(r == 200 or r[1] == "PartNotSequential" for r in results.values()), results


@needs_pg
def test_churn_on_one_key_across_gateways_is_never_a_server_error(cluster):
    a, b = cluster(), cluster()
    name = new_name()
    a.bucket(name).create_bucket()
    failures = []
    stop = time.time() + 4

    def churn(gw, i):
        bk = gw.bucket(name)
        while time.time() < stop:
            try:
                if random.random() < 0.5:
                    bk.put_object("churn", os.urandom(100))
                else:
                    bk.delete_object("churn")
            except oss2.exceptions.ServerError as e:
                failures.append((e.status, e.code))

    threads = [threading.Thread(target=churn, args=(gw, i)) for gw in (a, b) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status == 503 for status, _ in failures), failures


@needs_pg
def test_a_commit_that_comes_after_the_orphan_sweep_fails_instead_of_losing_bytes(cluster):
    """A part whose blob file is renamed into place but whose commit is held up (here by a
    session holding the upload's row) past --shared-file-grace-secs: another gateway's sweep
    claims and deletes the file. The part must then be refused, never acknowledged."""
    a = cluster()
    name = new_name()
    a.bucket(name).create_bucket()
    key = "held"
    up = a.bucket(name).init_multipart_upload(key).upload_id
    first = os.urandom(200 * 1024)
    e1 = a.bucket(name).upload_part(key, up, 1, first).etag
    held = subprocess.Popen([os.path.join(os.environ["KURA_TEST_PG_BIN"], "psql"), "-d", cluster.url, "-c",
                             f"BEGIN; SELECT 1 FROM uploads WHERE upload_id = '{up}' FOR UPDATE; "
                             "SELECT pg_sleep(7); COMMIT;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    outcome = {}
    second = os.urandom(200 * 1024)

    def part2():
        try:
            outcome["etag"] = a.bucket(name).upload_part(key, up, 2, second).etag
        except oss2.exceptions.OssError as e:
            outcome["error"] = (e.status, e.code)

    t = threading.Thread(target=part2)
    t.start()
    time.sleep(3)
    cluster("--shared-file-grace-secs", "2")  # sweeps at start
    t.join()
    held.wait(timeout=30)
    if "etag" in outcome:
        # Acknowledged: then its bytes must be there.
        infos = [oss2.models.PartInfo(1, e1), oss2.models.PartInfo(2, outcome["etag"])]
    else:
        assert outcome["error"][0] == 500, outcome
        infos = [oss2.models.PartInfo(1, e1),
                 oss2.models.PartInfo(2, a.bucket(name).upload_part(key, up, 2, second).etag)]
    a.bucket(name).complete_multipart_upload(key, up, infos)
    assert a.bucket(name).get_object(key).read() == first + second
