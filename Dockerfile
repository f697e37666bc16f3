# vidpred GPU image: Ray 2.60.0, Python 3.11, CUDA 12.8, PyTorch (CUDA build), DeepSpeed with its Adam ops
# prebuilt, and vidpred itself. Used by the Helm chart in k8s/vidpred for the head, the GPU workers and the
# job submitter alike (KubeRay wants one Ray version everywhere).
#
#   docker build -t REGISTRY/vidpred:0.1.0 .        # then: helm ... --set image.repository=REGISTRY/vidpred
#
# NOT BUILT HERE: the development machines have no Docker engine and cannot pull the base image, so this file
# is checked statically only (hadolint and checkov in tests/test_k8s_chart.py). docs/deploy.md says what to
# verify on the first real build. No credentials are baked in: S3 access comes at run time from a Secret or
# a ServiceAccount (IRSA / workload identity), see k8s/vidpred/values.yaml.
#
# Base: Ray's CUDA 12.8 image. Ray builds its -cu128 tags on nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04, so
# nvcc and the CUDA headers are present for the DeepSpeed op build below. Pinned by tag (written out, not an
# ARG, so that linters see it); for a build that can never change underneath you, append the digest that
# `docker buildx imagetools inspect rayproject/ray:2.60.0-py311-cu128` prints: FROM rayproject/ray:…@sha256:…
FROM rayproject/ray:2.60.0-py311-cu128

# PyTorch from its CUDA 12.8 index, pinned: pyproject.toml asks only for torch>=2.4 so that GPU users keep
# their CUDA build; here the image decides. TORCH_CUDA_ARCH_LIST is what the DeepSpeed ops are compiled for
# (no GPU is visible during `docker build`): A100 (8.0), A10/L4/L40S (8.6/8.9), H100/H200 (9.0).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
ARG DEEPSPEED_VERSION=0.19.8

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The base image's user `ray` (uid 1000, group users = 100) owns the Python install (/home/ray/anaconda3):
# install as it. Numeric ids throughout, so that Kubernetes' runAsNonRoot can check them.
USER 1000:100
WORKDIR /home/ray/vidpred-src

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --chown=1000:100 infra/image/constraints.txt /home/ray/vidpred-src/infra/image/constraints.txt

RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
 && pip install --no-cache-dir -c infra/image/constraints.txt hjson ninja packaging psutil py-cpuinfo tqdm

# DeepSpeed with ops compiled now instead of on first use (~50 s per op per pod otherwise):
#   FUSED_ADAM  (CUDA kernel, needs nvcc: the devel base above has it)
#   CPU_ADAM    (C++ only; used when ZeRO offloads the optimizer to the CPU)
# DS_ACCELERATOR=cuda: there is no GPU during the build, and without it DeepSpeed would pick its CPU
# accelerator and build CPU ops instead. Not prebuilt: async_io (needs libaio-dev; vidpred does no NVMe
# offload) and the inference kernels. vidpred's default optimizer is torch.optim.AdamW, which needs none of
# these; they are here for offload and fused-Adam configs, and so that no pod ever compiles at start-up.
RUN DS_ACCELERATOR=cuda DS_BUILD_OPS=0 DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 \
    TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" \
    pip install --no-cache-dir --no-build-isolation "deepspeed==${DEEPSPEED_VERSION}"

# vidpred and the rest of its dependencies (ray's extras, PyAV, pyarrow, boto3, …), versions from constraints.
COPY --chown=1000:100 pyproject.toml README.md /home/ray/vidpred-src/
COPY --chown=1000:100 vidpred /home/ray/vidpred-src/vidpred
# the Helm chart: package data of vidpred.cluster (vidpred/cluster/chart links to it)
COPY --chown=1000:100 k8s/vidpred /home/ray/vidpred-src/k8s/vidpred
RUN pip install --no-cache-dir -c infra/image/constraints.txt . \
 && python -c "import vidpred.cli, deepspeed, torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# Run as a dedicated unprivileged user: uid 10001 (a high uid, clear of host users), group 100 (users, as in
# the base image), no sudo (the base image's `ray` user has passwordless sudo). HOME is /tmp: the only
# writable place when the chart sets readOnlyRootFilesystem (it mounts an emptyDir there); Ray writes
# /tmp/ray, DeepSpeed/torch caches go under /tmp as well.
USER 0
RUN useradd --no-log-init --uid 10001 --gid 100 --home-dir /tmp --no-create-home --shell /bin/bash vidpred
USER 10001:100
WORKDIR /tmp
ENV HOME=/tmp \
    VIDPRED_CACHE=/tmp/vidpred \
    TORCH_EXTENSIONS_DIR=/tmp/torch_extensions \
    RAY_USAGE_STATS_ENABLED=0

# Kubernetes ignores Docker's HEALTHCHECK; KubeRay gives every Ray container its own liveness/readiness
# probes (raylet and dashboard-agent health). A process check here would only duplicate them badly.
HEALTHCHECK NONE

CMD ["vidpred", "--help"]
