"""Benchmark: the image store's backends, and why S3 goes through boto3 in threads.

Each run stores and reads back objects 8 at a time (a put, then a get of the same key), after one
warm-up pair. Per pair: the rate, the latency, and the CPU time the event loop's own thread spent
(work no other chat could be served during, whatever else loads the machine); a ticker on the loop
sleeping 1 ms also records how late it wakes (p99 and worst), which on a busy machine includes
the OS's scheduling. Compared:

- ``local``: :class:`bot.blobs.LocalBlobs` (files in a temp dir);
- ``s3 boto3+threads``: :class:`bot.blobs.s3.S3Blobs`, as the bot runs it;
- ``s3 aiobotocore``: the same calls on aiobotocore (when installed: ``pip install aiobotocore``).

S3 is moto's server in a child process (its CPU kept out of this process's GIL), on loopback, over
http and over https (a throwaway self-signed certificate). Figures are loopback figures: they
compare clients, not storage services.

Run: ``.venv/bin/python bench/bench_blobs.py [--quick]``. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import ipaddress
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3

from bot.blobs import LocalBlobs
from bot.blobs.s3 import S3Blobs, S3Credentials

KEYS = S3Credentials("AKIABENCHFAKE0000001", "bench/fake/secret/key/0000000000000000")
CONCURRENCY = 8
Op = Callable[[str, bytes], Awaitable[None]]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is also the CA bundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def start_moto(tls: tuple[Path, Path] | None) -> tuple[subprocess.Popen[bytes], str]:
    """moto's server in a child process on a free loopback port; (process, endpoint)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    if tls:
        args += ["-c", str(tls[0]), "-k", str(tls[1])]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"{'https' if tls else 'http'}://127.0.0.1:{port}"


async def measure(label: str, put: Op, get: Op, size: int, count: int) -> str:
    """``count`` put+get pairs, ``CONCURRENCY`` at a time: rate, latency, worst loop stall."""
    base = os.urandom(size)
    items = [base + i.to_bytes(4, "big") for i in range(count + 1)]  # a new object every time
    digests = [hashlib.sha256(data).hexdigest() for data in items]  # made before the clock runs
    stalls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - started - 0.001)

    gate = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            await put(digests[i], items[i])
            await get(digests[i], items[i])
            latencies.append(time.perf_counter() - started)

    await one(count)  # warm up: the client, its connections and its threads exist
    latencies.clear()
    tick = asyncio.create_task(ticker())
    started, cpu = time.perf_counter(), time.thread_time()
    await asyncio.gather(*(one(i) for i in range(count)))
    # CPU the event loop's own thread spent: what no other chat could use, whatever the load.
    loop_cpu = (time.thread_time() - cpu) / count
    wall = time.perf_counter() - started
    done.set()
    await tick
    latencies.sort()
    stalls.sort()
    p95 = latencies[max(0, round(len(latencies) * 0.95) - 1)]
    p99_stall = stalls[max(0, round(len(stalls) * 0.99) - 1)]
    return (f"{label:26s} {size >> 20:>2d} MiB x{count:<3d} {count / wall:6.1f}/s  "
            f"p50 {statistics.median(latencies) * 1000:5.0f} ms  p95 {p95 * 1000:5.0f} ms  "
            f"loop CPU/op {loop_cpu * 1000:5.1f} ms  stall p99 {p99_stall * 1000:4.0f} "
            f"max {stalls[-1] * 1000:4.0f} ms")


async def run_port(label: str, blobs: Any, size: int, count: int) -> str:
    async def put(digest: str, data: bytes) -> None:
        await blobs.put(digest, data)

    async def get(digest: str, data: bytes) -> None:
        assert await blobs.get(digest) == data

    try:
        return await measure(label, put, get, size, count)
    finally:
        await blobs.aclose()


async def run_aiobotocore(endpoint: str, bucket: str, verify: str | bool, size: int,
                          count: int) -> str:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    config = AioConfig(max_pool_connections=CONCURRENCY,
                       request_checksum_calculation="when_required",
                       response_checksum_validation="when_required")
    async with AioSession().create_client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", verify=verify, config=config,
            aws_access_key_id=KEYS.access_key, aws_secret_access_key=KEYS.secret_key) as s3:
        async def put(digest: str, data: bytes) -> None:
            await s3.put_object(Bucket=bucket, Key=f"aio/{digest}", Body=data)

        async def get(digest: str, data: bytes) -> None:
            answer = await s3.get_object(Bucket=bucket, Key=f"aio/{digest}")
            async with answer["Body"] as body:
                assert hashlib.sha256(await body.read()).hexdigest() == digest

        return await measure("s3 aiobotocore", put, get, size, count)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller objects")
    args = parser.parse_args()
    shapes = [(1 << 20, 16)] if args.quick else [(1 << 20, 64), (20 << 20, 16)]
    try:
        import aiobotocore  # noqa: F401
        have_aio = True
    except ImportError:
        have_aio = False
        print("aiobotocore not installed: its rows are left out (pip install aiobotocore)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size, count in shapes:
            print(await run_port("local", LocalBlobs(folder / "blobs"), size, count))
        for tls in (None, self_signed(folder)):
            proc, endpoint = start_moto(tls)
            verify: str | bool = str(tls[0]) if tls else True
            if tls:  # S3Blobs' boto3 reads the CA bundle from here
                os.environ["AWS_CA_BUNDLE"] = str(tls[0])
            try:
                bucket = "bench-blobs"
                boto3.session.Session().client(
                    "s3", endpoint_url=endpoint, region_name="us-east-1", verify=verify,
                    aws_access_key_id=KEYS.access_key,
                    aws_secret_access_key=KEYS.secret_key).create_bucket(Bucket=bucket)
                scheme = endpoint.split(":")[0]
                for size, count in shapes:
                    blobs = S3Blobs(f"s3://{bucket}/bot", credentials=KEYS, endpoint_url=endpoint,
                                    max_bytes=64 << 20, threads=CONCURRENCY)
                    print(await run_port(f"s3 boto3+threads ({scheme})", blobs, size, count))
                    if have_aio:
                        print(await run_aiobotocore(endpoint, bucket, verify, size, count))
            finally:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
