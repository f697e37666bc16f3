"""The data plane against a real S3 server (SeaweedFS on 127.0.0.1): pyarrow listing and streaming reads,
boto3 uploads, bad files and bad credentials, and a server restarted in the middle of a read."""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vidpred.config import DataConfig
from vidpred.data.decode import READ_BUFFER, decode_frames
from vidpred.data.pipeline import video_clips
from vidpred.data.report import survey
from vidpred.data.sources import DataError, check_root, list_videos
from vidpred.storage import open_input
from vidpred.data import upload as upload_mod
from vidpred.data.upload import existing_objects, incomplete_uploads, s3_etag, upload

from s3server import SECRET_KEY
from test_data_bad import CFG, mixed_tree
from videos import encode, noisy_frame, seconds


def test_listing_pages_past_1000_objects(s3_env):
    bucket = s3_env.make_bucket("many-objects")
    client = s3_env.client()
    names = [f"videos/train/clip{i:05d}.mov" for i in range(1005)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"x"), names))
    assert len(list_videos(f"s3://{bucket}", "train")) == 1005                    # pyarrow pages
    assert len(existing_objects(client, bucket, "videos/train")) == 1005         # boto3 pages


def test_mixed_tree_on_s3_gives_the_same_account_and_clips_as_on_disk(s3_env, tmp_path):
    expected = mixed_tree(tmp_path)
    uri = s3_env.upload_tree(tmp_path, s3_env.make_bucket("mixed"), "bdd")
    summary = survey(CFG, uri, splits=("train",))
    assert {s.uri.rsplit("/", 1)[-1]: str(s.reason) for s in summary.skipped} == expected
    assert all(s.uri.startswith(f"{uri}/") for s in summary.skipped)
    for video in summary.videos:
        local = str(tmp_path / video.uri.removeprefix(uri + "/"))
        remote, disk = list(video_clips(video.uri, CFG)), list(video_clips(local, CFG))
        assert len(remote) == len(disk) == video.clips and all(np.array_equal(a, b) for a, b in zip(remote, disk))


class CountingFile:
    """A file-like proxy that counts the bytes PyAV pulls through it."""

    def __init__(self, f):
        self.f, self.read_bytes = f, 0

    def read(self, n=-1):
        data = self.f.read(n)
        self.read_bytes += len(data)
        return data

    def seek(self, *args):
        return self.f.seek(*args)

    def tell(self):
        return self.f.tell()


@pytest.fixture(scope="module")
def big_video(s3_server, tmp_path_factory):
    """~5 MB of incompressible H.264 (index first), on disk and in the bucket."""
    path = encode(tmp_path_factory.mktemp("big") / "big.mov", seconds(6), height=120, width=160,
                  frame=noisy_frame, faststart=True)
    bucket = s3_server.make_bucket("big-video")
    s3_server.client().upload_file(str(path), bucket, "videos/train/big.mov")
    return path, f"s3://{bucket}/videos/train/big.mov"


def test_decoding_streams_the_object_with_ranged_reads(s3_env, big_video):
    path, uri = big_video
    with open_input(uri) as f:
        counted = CountingFile(f)
        next(decode_frames(counted, 10, 32, 32))
        assert counted.read_bytes < path.stat().st_size / 2     # the first frame did not need the object


def test_errors_name_the_uri_and_never_the_secret(s3_env, monkeypatch):
    bucket = s3_env.make_bucket("errors")
    s3_env.client().put_object(Bucket=bucket, Key="data/videos/train/a.mov", Body=b"x")
    with pytest.raises(DataError, match="s3://no-such-bucket/bdd: bucket 'no-such-bucket' does not exist"):
        check_root("s3://no-such-bucket/bdd")
    with pytest.raises(DataError, match=f"s3://{bucket}/elsewhere: no videos/ folder"):
        check_root(f"s3://{bucket}/elsewhere")
    check_root(f"s3://{bucket}/data")

    wrong = "wrong-secret-0123456789"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    from vidpred import storage

    storage.clear_filesystems()
    with pytest.raises(storage.StorageError) as err:
        survey(DataConfig(), f"s3://{bucket}/data")
    message = str(err.value)
    assert message.startswith(f"s3://{bucket}/data: access refused") and "credentials" in message
    assert wrong not in message and SECRET_KEY not in message


def test_upload_is_multipart_skips_identical_objects_and_resumes(s3_env, tmp_path):
    (tmp_path / "videos" / "train").mkdir(parents=True)
    big = tmp_path / "videos" / "train" / "big.bin"
    big.write_bytes(np.random.default_rng(0).bytes(11 * 2**20))          # 3 parts of 5 MiB
    for i in range(3):
        (tmp_path / "videos" / "train" / f"small{i}.mov").write_bytes(b"v" * (i + 1))
    bucket = s3_env.make_bucket("upload-tool")
    dest = f"s3://{bucket}/bdd"

    first = upload(tmp_path, dest, part_size=5 * 2**20, progress=False)
    assert (first.uploaded, first.skipped) == (4, 0)
    objects = existing_objects(s3_env.client(), bucket, "bdd")
    assert objects["bdd/videos/train/big.bin"][1] == s3_etag(big, 5 * 2**20) and s3_etag(big, 5 * 2**20).endswith("-3")

    again = upload(tmp_path, dest, part_size=5 * 2**20, progress=False)
    assert (again.uploaded, again.skipped) == (0, 4)

    (tmp_path / "videos" / "train" / "small0.mov").write_bytes(b"changed")   # same name, new content
    s3_env.client().delete_object(Bucket=bucket, Key="bdd/videos/train/small1.mov")  # as if interrupted
    resumed = upload(tmp_path, dest, part_size=5 * 2**20, progress=False)
    assert (resumed.uploaded, resumed.skipped) == (2, 2)


def unfinished(client, bucket: str, prefix: str) -> list[str]:
    """Keys with an incomplete multipart upload; skips the test where the server cannot list them."""
    from botocore.exceptions import ClientError

    try:
        return sorted(key for key, _ in incomplete_uploads(client, bucket, prefix))
    except ClientError as exc:
        pytest.skip(f"this S3 server does not support ListMultipartUploads ({exc}): the cleanup cannot be checked")


def big_file(root, mib: int = 11):
    path = root / "videos" / "train" / "big.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(np.random.default_rng(1).bytes(mib * 2**20))
    return path


def test_upload_aborts_what_an_interrupted_run_left_for_its_keys_only(s3_env, tmp_path):
    big, part = big_file(tmp_path), 5 * 2**20
    bucket, client = s3_env.make_bucket("upload-cleanup"), s3_env.client()
    key, foreign = "bdd/videos/train/big.bin", "bdd/someone-else.bin"
    left = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]       # a run killed after part 1
    client.upload_part(Bucket=bucket, Key=key, UploadId=left, PartNumber=1, Body=big.read_bytes()[:part])
    other = client.create_multipart_upload(Bucket=bucket, Key=foreign)["UploadId"]  # not this tree's: kept
    assert unfinished(client, bucket, "bdd/") == [foreign, key]

    result = upload(tmp_path, f"s3://{bucket}/bdd", part_size=part, progress=False)
    assert (result.uploaded, result.aborted) == (1, 1)
    assert unfinished(client, bucket, "bdd/") == [foreign]
    head = client.head_object(Bucket=bucket, Key=key)                                # complete, same bytes
    assert head["ContentLength"] == big.stat().st_size and head["ETag"].strip('"') == s3_etag(big, part)
    client.abort_multipart_upload(Bucket=bucket, Key=foreign, UploadId=other)


def test_a_file_whose_upload_fails_leaves_no_multipart_upload(s3_env, tmp_path, monkeypatch):
    """A failure in the middle of a multipart upload (here raised from the progress callback, i.e. inside the
    transfer of a part; one attempt, as botocore retries a failed send) aborts that upload: no object and no
    parts are left."""
    big_file(tmp_path)
    bucket, client = s3_env.make_bucket("upload-fails"), s3_env.client()

    def fail(self, nbytes: int = 0, files: int = 0) -> None:
        if nbytes:
            raise RuntimeError("local read failed mid-file")

    monkeypatch.setattr(upload_mod.Progress, "add", fail)
    with pytest.raises(RuntimeError, match="mid-file"):
        upload(tmp_path, f"s3://{bucket}/bdd", DataConfig(s3_max_attempts=1), part_size=5 * 2**20, progress=False)
    assert unfinished(client, bucket, "bdd/") == []
    assert existing_objects(client, bucket, "bdd") == {}


def test_inspect_command_on_s3(s3_env, tmp_path):
    expected = mixed_tree(tmp_path)
    uri = s3_env.upload_tree(tmp_path, s3_env.make_bucket("inspect-cli"), "bdd")
    proc = subprocess.run([sys.executable, "-m", "vidpred", "data", "inspect", uri, "--set", "data.context=2",
                           "--set", "data.future=2", "--json", str(tmp_path / "account.json")],
                          env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "train       3" in out and "640x272 ×1" in out and "rotation 0° ×3" in out
    assert all(name in out for name in expected) and "undecodable codec" in out
    assert f"{len(expected)} bad files" in out and SECRET_KEY not in out + proc.stderr


def test_server_restart_in_the_middle_of_a_read_costs_retries_not_the_read(s3_env, big_video):
    """Kill the server between two ranged reads, bring it back 3 s later: the decode finishes, same frames."""
    path, uri = big_video
    want = list(decode_frames(str(path), 10, 32, 32))
    got = []
    restarting = threading.Event()

    def restart():
        restarting.set()   # before start(): its readiness check may return after the decode has resumed
        s3_env.start()

    with open_input(uri, DataConfig(s3_max_attempts=12)) as f:
        frames = decode_frames(f, 10, 32, 32)
        got.append(next(frames))
        s3_env.stop(kill=True)
        timer = threading.Timer(3.0, restart)
        timer.start()
        try:
            got += list(frames)
            waited_for_the_server = restarting.is_set()  # the rest of the object was not read before the kill
        finally:
            timer.join()
    assert waited_for_the_server and path.stat().st_size > 2 * READ_BUFFER
    assert len(got) == len(want) == 60 and all(np.array_equal(a, b) for a, b in zip(got, want))
