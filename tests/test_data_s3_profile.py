"""Credentials, endpoint and region from a shared AWS config/credentials profile only (no key, endpoint or
region in the environment) reach SeaweedFS on both of vidpred's access paths: pyarrow (listing, streamed
decode) and boto3 (the upload tool's listing and multipart upload)."""

import socket

import boto3
import numpy as np
import pytest

from vidpred import storage
from vidpred.data.decode import decode_frames
from vidpred.data.sources import list_videos
from vidpred.storage import StorageError, open_input
from vidpred.data.upload import upload

from s3server import ACCESS_KEY, SECRET_KEY
from videos import encode, seconds

PROFILE = "vidpred-test"
UNSET = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
         "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_DEFAULT_PROFILE", "AWS_REQUEST_CHECKSUM_CALCULATION")


@pytest.fixture
def profile_env(s3_server, tmp_path, monkeypatch):
    """The test server reachable only through the ``vidpred-test`` profile of files in tmp_path."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    credentials, config = tmp_path / "aws-credentials", tmp_path / "aws-config"
    credentials.write_text(f"[{PROFILE}]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    config.write_text(f"[profile {PROFILE}]\nregion = us-east-1\nendpoint_url = {s3_server.endpoint}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", PROFILE)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it cached the config files read before
    storage.clear_filesystems()
    yield s3_server
    storage.clear_filesystems()


def test_a_profile_alone_serves_boto3_upload_and_pyarrow_reads(profile_env, tmp_path):
    tree = tmp_path / "tree"
    video = encode(tree / "videos" / "train" / "a.mov", seconds(1.0))
    (tree / "videos" / "train" / "big.mov").write_bytes(np.random.default_rng(1).bytes(6 * 2**20))  # 2 parts
    dest = f"s3://{profile_env.make_bucket('profile-only')}/bdd"

    first = upload(tree, dest, part_size=5 * 2**20, progress=False)            # boto3: list + multipart PUT
    again = upload(tree, dest, part_size=5 * 2**20, progress=False)            # boto3: list, compare ETags
    assert (first.uploaded, again.uploaded, again.skipped) == (2, 0, 2)

    listed = list_videos(dest, "train")                                         # pyarrow: list
    assert [(v.name, v.size) for v in listed] == [("a.mov", video.stat().st_size), ("big.mov", 6 * 2**20)]
    with open_input(f"{dest}/videos/train/a.mov") as f:                         # pyarrow: ranged reads
        remote = list(decode_frames(f, 10, 16, 16))
    local = list(decode_frames(str(video), 10, 16, 16))
    assert len(remote) == len(local) == 10 and all(np.array_equal(a, b) for a, b in zip(remote, local))


def test_a_profile_that_does_not_exist_is_named(profile_env, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(StorageError, match=r"AWS shared config: .*\(no-such-profile\) could not be found"):
        list_videos("s3://profile-only/bdd", "train")


def test_web_identity_setup_needs_no_static_keys_from_vidpred(tmp_path, monkeypatch):
    """IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE): vidpred builds both access paths without asking for
    keys. No request is made: there is no STS here, so the role exchange itself is not tested."""
    from vidpred.config import DataConfig
    from vidpred.data.upload import s3_client

    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "token").write_text("not-a-real-token")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/vidpred-test")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    # A TCP listener that never answers: vidpred's reachability check (one connect) passes, and no S3 request
    # could be answered, so none may be made.
    listener = socket.create_server(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    storage.clear_filesystems()
    storage.check_reachable.cache_clear()
    try:
        assert storage.resolve("s3://irsa-bucket/bdd")[1] == "irsa-bucket/bdd"
        assert s3_client(DataConfig()).meta.endpoint_url == endpoint
    finally:
        storage.clear_filesystems()
        listener.close()
