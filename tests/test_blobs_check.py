"""``imagine-bot check`` says where images live and whether that store answers (real subprocesses;
the S3 ones against moto's server on loopback)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.blob_backends import (  # noqa: F401 - fixtures
    SECRET_KEY,
    aws_env_fixture,
    new_bucket,
    s3_endpoint_fixture,
)
from tests.test_cli import run_cli


def config(tmp_path: Path, blobs: str = "") -> None:
    (tmp_path / "config.toml").write_text(f'[web]\nenabled = "off"\n{blobs}')


def test_local_directory_is_reported_and_not_created(tmp_path: Path) -> None:
    config(tmp_path)
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "blobs: local data/blobs: reachable" in proc.stdout  # relative to config.toml
    assert not (tmp_path / "data").exists()  # check only looks


def test_a_reachable_bucket(aws_env: None, s3_endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(s3_endpoint)
    config(tmp_path, f'[blobs]\nurl = "s3://{bucket}/bot"\nendpoint_url = "{s3_endpoint}"\n')
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"blobs: s3://{bucket}/bot ({s3_endpoint}, us-east-1): reachable" in proc.stdout
    assert "config ok" in proc.stdout and SECRET_KEY not in proc.stdout + proc.stderr


def test_a_bucket_without_keys_is_a_missing_setting(aws_env: None, tmp_path: Path) -> None:
    config(tmp_path, '[blobs]\nurl = "s3://imagine-images/bot"\n')
    proc = run_cli("check", cwd=tmp_path, env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert proc.returncode == 2
    assert ("missing: [blobs] url is an S3 bucket but env var AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY are not set") in proc.stdout


def test_an_unreachable_bucket_fails_the_check(aws_env: None, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config(tmp_path, '[blobs]\nurl = "s3://imagine-images/bot"\n'
                     f'endpoint_url = "http://127.0.0.1:{port}"\nmax_attempts = 1\n')
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert (f"blobs: s3://imagine-images/bot (http://127.0.0.1:{port}, us-east-1): UNREACHABLE "
            "(S3 probe failed: EndpointConnectionError)") in proc.stdout
    assert "config ok" not in proc.stdout and "Traceback" not in proc.stderr
    assert SECRET_KEY not in proc.stdout + proc.stderr
