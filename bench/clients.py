"""Client benchmark: `kura cp` against the Python SDKs' own uploaders and `aws s3 cp`, same server,
same part size, same run. Prints medians and ratios.

Run with scripts/bench-clients (it builds the release binary and sets up .venv)."""
import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import oss2
import alibabacloud_oss_v2 as oss

AK, SK, REGION = "bench-ak", "bench-sk", "cn-hangzhou"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kura", required=True)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--part-mib", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="kura-bench-clients-")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [args.kura, "serve", "--listen", f"127.0.0.1:{port}", "--data", os.path.join(work, "data"),
         "--access-key-id", AK, "--access-key-secret", SK, "--deletion-grace-secs", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    while "listening on" not in server.stdout.readline():
        pass
    try:
        src = os.path.join(work, "src.bin")
        block = os.urandom(1 << 20)
        with open(src, "wb") as f:
            for _ in range(args.size_mib):
                f.write(block)
        size = os.path.getsize(src)
        part = args.part_mib << 20
        bucket = oss2.Bucket(oss2.Auth(AK, SK), endpoint, "bench")
        bucket.create_bucket()
        cfg = oss.config.load_default()
        cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(AK, SK)
        cfg.region, cfg.endpoint = REGION, endpoint
        v2 = oss.Client(cfg)

        def kura_cp(run):
            env = dict(os.environ, OSS_ENDPOINT=endpoint, OSS_ACCESS_KEY_ID=AK, OSS_ACCESS_KEY_SECRET=SK)
            t = time.perf_counter()
            p = subprocess.Popen([args.kura, "cp", src, f"oss://bench/kura-{run}", "--part-size", str(part),
                                  "--no-resume"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(p.pid, 0)
            secs = time.perf_counter() - t
            if status != 0:
                raise RuntimeError(f"kura cp failed: {status}")
            return secs, usage.ru_maxrss / 1024  # KiB -> MiB

        def oss2_upload(run):
            t = time.perf_counter()
            oss2.resumable_upload(bucket, f"oss2-{run}", src, store=oss2.ResumableStore(root=work, dir="oss2-ckpt"),
                                  multipart_threshold=part, part_size=part, num_threads=8)
            return time.perf_counter() - t, None

        def aws_cp(run):
            # aws-cli with its defaults (8 MiB parts, 10 in flight, CRC32 checksums): the S3 path.
            env = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION="us-east-1")
            aws = os.path.join(os.path.dirname(sys.executable), "aws")
            t = time.perf_counter()
            subprocess.run([aws, "--endpoint-url", endpoint, "s3", "cp", src, f"s3://bench/aws-{run}", "--only-show-errors"],
                           env=env, check=True)
            return time.perf_counter() - t, None

        def v2_upload(run):
            t = time.perf_counter()
            v2.uploader(part_size=part, parallel_num=8).upload_file(
                oss.PutObjectRequest(bucket="bench", key=f"v2-{run}"), filepath=src)
            return time.perf_counter() - t, None

        results = {}
        for name, fn in [("kura cp", kura_cp), ("oss2.resumable_upload", oss2_upload),
                         ("alibabacloud-oss-v2 Uploader", v2_upload), ("aws s3 cp (S3 dialect)", aws_cp)]:
            secs, rss = [], []
            for run in range(args.runs):
                s, r = fn(run)
                secs.append(s)
                if r is not None:
                    rss.append(r)
            rate = size / 1e6 / statistics.median(secs)
            results[name] = rate
            extra = f", peak RSS {max(rss):.0f} MiB" if rss else ""
            each = ", ".join(f"{size / 1e6 / s:.0f}" for s in secs)
            print(f"{name:30s} {rate:7.0f} MB/s (median of {args.runs}: {each}){extra}")
        best_py = max(results["oss2.resumable_upload"], results["alibabacloud-oss-v2 Uploader"])
        print(f"kura cp / faster Python uploader: {results['kura cp'] / best_py:.2f}x "
              f"({args.size_mib} MiB, {args.part_mib} MiB parts, 8 in flight)")
        print(f"aws s3 cp / kura cp: {results['aws s3 cp (S3 dialect)'] / results['kura cp']:.2f}x; "
              f"aws s3 cp / faster Python OSS uploader: {results['aws s3 cp (S3 dialect)'] / best_py:.2f}x")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
