"""Starts a real `kura serve` for the whole session and hands out SDK clients for it."""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

import oss2
import alibabacloud_oss_v2 as oss

AK = "test-ak"
SK = "test-secret-key"
REGION = "cn-hangzhou"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir, port, proc):
        self.data_dir = data_dir
        self.port = port
        self.proc = proc
        self.endpoint = f"http://127.0.0.1:{port}"

    def blob_files(self):
        out = []
        for dirpath, _, files in os.walk(os.path.join(self.data_dir, "blobs")):
            out.extend(os.path.join(dirpath, f) for f in files)
        return out

    def tmp_files(self):
        out = []
        for dirpath, _, files in os.walk(os.path.join(self.data_dir, "tmp")):
            out.extend(os.path.join(dirpath, f) for f in files)
        return out


def new_pg_database():
    """A fresh database on the test PostgreSQL (KURA_TEST_PG_URL); its URL."""
    base = os.environ["KURA_TEST_PG_URL"]
    name = "kt_" + uuid.uuid4().hex[:16]
    subprocess.run([os.path.join(os.environ["KURA_TEST_PG_BIN"], "createdb"), "-h", "127.0.0.1",
                    "-p", base.rsplit(":", 1)[1], "-U", os.environ["KURA_TEST_PG_USER"], name],
                   check=True)
    return f"{base}/{name}"


class Gateway:
    """One `kura serve` process; several share a database and a data directory."""

    def __init__(self, data_dir, meta_url, *extra):
        binary = os.environ.get("KURA_BIN", os.path.join(ROOT, "target", "debug", "kura"))
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log = open(os.path.join(data_dir, f"gateway-{self.port}.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data", data_dir,
             "--access-key-id", AK, "--access-key-secret", SK, "--max-buckets", "1000",
             *([] if "--meta" in extra else ["--meta", meta_url]), *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        self.gateway_id = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("gateway id "):
                self.gateway_id = line.split()[-1]
            if "listening on" in line:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("kura serve exited early; see " + self.log.name)
        else:
            raise RuntimeError("kura serve did not start")

    def bucket(self, name):
        return oss2.Bucket(oss2.Auth(AK, SK), self.endpoint, name)

    def kill(self):
        """kill -9: no shutdown, no cleanup."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)




def start_kura(data_dir, *extra, log_name="server.log"):
    """`kura serve` on a free port; returns (process, port) once it listens."""
    binary = os.environ.get("KURA_BIN", os.path.join(ROOT, "target", "debug", "kura"))
    port = _free_port()
    log = open(os.path.join(data_dir, log_name), "w")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data", data_dir,
         "--access-key-id", AK, "--access-key-secret", SK, "--max-buckets", "1000", *extra],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    # The server prints its address once it accepts connections.
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if "listening on" in line:
            return proc, port
        if proc.poll() is not None:
            raise RuntimeError("kura serve exited early; see " + log.name)
    raise RuntimeError("kura serve did not start")


SEEDED_BUCKET = "seeded-before-copy"


def seed_embedded_store(data_dir):
    """Fills an embedded store through a real server (objects with metadata, a completed
    multipart object, open uploads with parts, deleted objects still queued for their blobs'
    deletion), stops it, and returns what was written, for checking after `kura meta copy`."""
    import hashlib
    proc, port = start_kura(data_dir, "--deletion-grace-secs", "3600", log_name="seed.log")
    try:
        bk = oss2.Bucket(oss2.Auth(AK, SK), f"http://127.0.0.1:{port}", SEEDED_BUCKET)
        bk.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ)
        objects = {}
        for i in range(120):
            key = f"dir{i % 4}/obj-{i:03d}"
            data = os.urandom(i * 37 + 1)
            bk.put_object(key, data, headers={"Content-Type": "text/x-seed", "x-oss-meta-n": str(i)})
            objects[key] = hashlib.md5(data).hexdigest()
        for i in range(10):
            bk.delete_object(f"dir0/obj-{i * 4:03d}")
            del objects[f"dir0/obj-{i * 4:03d}"]
        key = "multipart/whole"
        up = bk.init_multipart_upload(key).upload_id
        parts = [os.urandom(100 * 1024) for _ in range(3)]
        infos = [oss2.models.PartInfo(n, bk.upload_part(key, up, n, d).etag) for n, d in enumerate(parts, 1)]
        bk.complete_multipart_upload(key, up, infos)
        objects[key] = hashlib.md5(b"".join(parts)).hexdigest()
        open_uploads = {}
        for key in ("open/one", "open/two"):
            up = bk.init_multipart_upload(key).upload_id
            datas = [os.urandom(100 * 1024 + n) for n in range(1, 4)]
            etags = [bk.upload_part(key, up, n, d).etag for n, d in enumerate(datas, 1)]
            open_uploads[key] = (up, datas, etags)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"objects": objects, "uploads": open_uploads}


@pytest.fixture(scope="session")
def server():
    """The session's server. On PostgreSQL (KURA_TEST_PG_URL) its store began as an embedded
    one, seeded and then moved with `kura meta copy`, so the whole suite runs on a copy."""
    binary = os.environ.get("KURA_BIN", os.path.join(ROOT, "target", "debug", "kura"))
    data_dir = tempfile.mkdtemp(prefix="kura-pytest-")
    seeded = None
    meta = []
    if os.environ.get("KURA_TEST_PG_URL"):
        seeded = seed_embedded_store(data_dir)
        url = new_pg_database()
        subprocess.run([binary, "meta", "copy", "--from", data_dir, "--to", url], check=True,
                       stdout=subprocess.DEVNULL)
        meta = ["--meta", url]
    proc, port = start_kura(data_dir, "--deletion-grace-secs", "0", *meta)
    s = Server(data_dir, port, proc)
    s.seeded = seeded
    yield s
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(data_dir, ignore_errors=True)


def new_name(prefix="b"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["v1", "v4"])
def auth(request):
    if request.param == "v1":
        return oss2.Auth(AK, SK), None
    return oss2.AuthV4(AK, SK), REGION


@pytest.fixture
def bucket(server, auth):
    """A fresh oss2 Bucket, signed with V1 and with V4 (the test runs once for each)."""
    a, region = auth
    b = oss2.Bucket(a, server.endpoint, new_name(), region=region)
    b.create_bucket()
    return b


@pytest.fixture
def bucket_v1(server):
    b = oss2.Bucket(oss2.Auth(AK, SK), server.endpoint, new_name())
    b.create_bucket()
    return b


@pytest.fixture
def v2client(server):
    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(AK, SK)
    cfg.region = REGION
    cfg.endpoint = server.endpoint
    return oss.Client(cfg)


@pytest.fixture
def tmpfile(tmp_path):
    def make(size, name="src.bin"):
        p = tmp_path / name
        with open(p, "wb") as f:
            f.write(os.urandom(size))
        return str(p)
    return make


def raw_request(server, method, bucket, key="", params=None, headers=None, data=b"", secret=SK):
    """A request signed by hand with V1, for what the SDKs refuse to send."""
    import base64
    import email.utils
    import hmac
    import hashlib
    from urllib.parse import quote
    import requests

    headers = dict(headers or {})
    headers.setdefault("Date", email.utils.formatdate(usegmt=True))
    params = params or {}
    resource = f"/{bucket}/{key}" if bucket else "/"
    subs = sorted(k for k in params if k in ("acl", "uploads", "uploadId", "partNumber", "delete", "bucketInfo",
                                             "location", "objectMeta", "live", "sequential", "tagging", "restore",
                                             "cleanRestoredObject"))
    if subs:
        resource += "?" + "&".join(k if params[k] == "" else f"{k}={params[k]}" for k in subs)
    oss_headers = "".join(f"{k.lower()}:{v}\n" for k, v in sorted(headers.items()) if k.lower().startswith("x-oss-"))
    sts = "\n".join([method, headers.get("Content-MD5", ""), headers.get("Content-Type", ""), headers["Date"], oss_headers + resource])
    sig = base64.b64encode(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest()).decode()
    headers["Authorization"] = f"OSS {AK}:{sig}"
    url = f"{server.endpoint}/{bucket}/{quote(key, safe='')}" if bucket else f"{server.endpoint}/"
    return requests.request(method, url, params=params, headers=headers, data=data)
