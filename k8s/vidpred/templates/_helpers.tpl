{{/* Names ----------------------------------------------------------------------------------------------- */}}

{{- define "vidpred.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's full name: the RayJob / RayCluster is called this, the ConfigMap <fullname>-config.
Kept to 40 characters: KubeRay derives pod and service names from it (RayCluster names longer than that
are cut and suffixed), and Kubernetes labels stop at 63.
*/}}
{{- define "vidpred.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "vidpred.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "vidpred.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vidpred.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vidpred.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vidpred.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "vidpred.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "vidpred.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vidpred.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false (an existing ServiceAccount)" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vidpred.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Worker capacity and the vidpred config -------------------------------------------------------------- */}}

{{/* Worker pods the group can have: maxReplicas with the autoscaler, else replicas. Checks the ordering. */}}
{{- define "vidpred.workerPods" -}}
{{- $w := .Values.worker -}}
{{- if gt (int $w.minReplicas) (int $w.maxReplicas) -}}
{{- fail (printf "worker.minReplicas (%d) is greater than worker.maxReplicas (%d)" (int $w.minReplicas) (int $w.maxReplicas)) -}}
{{- end -}}
{{- if or (lt (int $w.replicas) (int $w.minReplicas)) (gt (int $w.replicas) (int $w.maxReplicas)) -}}
{{- fail (printf "worker.replicas (%d) must lie between worker.minReplicas (%d) and worker.maxReplicas (%d)" (int $w.replicas) (int $w.minReplicas) (int $w.maxReplicas)) -}}
{{- end -}}
{{- if .Values.autoscaling.enabled -}}{{ int $w.maxReplicas }}{{- else -}}{{ int $w.replicas }}{{- end -}}
{{- end -}}

{{/*
The vidpred config written to the ConfigMap (YAML). The chart owns data.uri and train.storage_path (from
storage.*) and fills in the GPU layout unless config.train says otherwise (num_workers = the GPUs of the
group's pods, and, when worker.minReplicas is below them, config.train gives neither key and the mode is not
tune, min_workers = the GPUs of minReplicas pods: an elastic run); it refuses a layout that needs more
GPUs than the worker group can ever have (Ray Train would wait for them forever).
*/}}
{{- define "vidpred.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $data := deepCopy (index $cfg "data" | default dict) -}}
{{- $train := deepCopy (index $cfg "train" | default dict) -}}
{{- if hasKey $data "uri" -}}
{{- fail "config.data.uri: set the dataset through storage.dataUri, not in config" -}}
{{- end -}}
{{- if hasKey $train "storage_path" -}}
{{- fail "config.train.storage_path: set checkpoint storage through storage.checkpointUri, not in config" -}}
{{- end -}}
{{- $_ := set $data "uri" .Values.storage.dataUri -}}
{{- $_ = set $train "storage_path" .Values.storage.checkpointUri -}}
{{- if not (hasKey $train "name") -}}{{- $_ = set $train "name" (include "vidpred.fullname" .) -}}{{- end -}}
{{- if not (hasKey $train "use_gpu") -}}{{- $_ = set $train "use_gpu" true -}}{{- end -}}
{{- if not (hasKey $train "gpus_per_worker") -}}{{- $_ = set $train "gpus_per_worker" 1 -}}{{- end -}}
{{- if not (hasKey $train "cpus_per_worker") -}}{{- $_ = set $train "cpus_per_worker" 1 -}}{{- end -}}
{{- $pods := int (include "vidpred.workerPods" .) -}}
{{- $gpus := mul $pods (int .Values.worker.gpus) -}}
{{- if not (hasKey $train "num_workers") -}}
{{- $_ = set $train "num_workers" (int (floor (divf $gpus (float64 $train.gpus_per_worker)))) -}}
{{- /* fewer pods may be up (a lost spot node): an elastic run over minReplicas..the group's pods; not in
mode tune, where the pods are room for concurrent trials of a fixed size */ -}}
{{- if and (lt (int .Values.worker.minReplicas) $pods) (not (hasKey $train "min_workers")) (ne .Values.mode "tune") -}}
{{- $least := mul (int .Values.worker.minReplicas) (int .Values.worker.gpus) -}}
{{- $_ = set $train "min_workers" (max 1 (int (floor (divf $least (float64 $train.gpus_per_worker))))) -}}
{{- end -}}
{{- end -}}
{{- if lt (float64 $train.num_workers) 1.0 -}}
{{- fail (printf "train.num_workers would be 0: the worker group has %d GPUs, fewer than train.gpus_per_worker (%v)" $gpus $train.gpus_per_worker) -}}
{{- end -}}
{{- $need := mulf (float64 $train.num_workers) (float64 $train.gpus_per_worker) -}}
{{- if and $train.use_gpu (gt $need (float64 $gpus)) -}}
{{- $which := ternary "maxReplicas" "replicas" .Values.autoscaling.enabled -}}
{{- fail (printf "config.train.num_workers × gpus_per_worker = %v GPUs, but the worker group can have at most %d (worker.%s %d × worker.gpus %d): Ray Train would wait for them forever; lower config.train.num_workers or raise worker.%s" $need $gpus $which (int (include "vidpred.workerPods" .)) (int .Values.worker.gpus) $which) -}}
{{- end -}}
{{- $_ = set $cfg "data" $data -}}
{{- $_ = set $cfg "train" $train -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Queueing and the RayJob's lifecycle ----------------------------------------------------------------- */}}

{{/*
The Kueue LocalQueue the RayJob / RayCluster is submitted to (kueue.queueName), or nothing. Refuses what
Kueue's RayJob / RayCluster integrations document as unsupported: the in-tree autoscaler (Kueue admits a fixed
set of pods and reserves quota for them), and a RayJob that keeps its cluster after the job (Kueue does not
admit it; KubeRay refuses to suspend it).
*/}}
{{- define "vidpred.kueueQueue" -}}
{{- with .Values.kueue.queueName -}}
{{- if $.Values.autoscaling.enabled -}}
{{- fail (printf "kueue.queueName (%s) with autoscaling.enabled: Kueue admits a fixed set of pods and needs KubeRay's in-tree autoscaler off; set autoscaling.enabled=false (the worker group then has worker.replicas pods)" .) -}}
{{- end -}}
{{- if and (ne $.Values.mode "cluster") (not $.Values.job.shutdownAfterJobFinishes) -}}
{{- fail (printf "kueue.queueName (%s) with job.shutdownAfterJobFinishes=false: Kueue admits a RayJob only when its cluster is deleted at the end; set job.shutdownAfterJobFinishes=true" .) -}}
{{- end -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/*
RayJob lifecycle combinations KubeRay's validation refuses (the RayJob would end as ValidationFailed, after
it was created): refused here, before anything reaches the cluster. Renders nothing.
*/}}
{{- define "vidpred.jobLifecycleChecks" -}}
{{- $j := .Values.job -}}
{{- if and (not $j.shutdownAfterJobFinishes) (gt (int $j.ttlSecondsAfterFinished) 0) -}}
{{- fail (printf "job.ttlSecondsAfterFinished (%d) needs job.shutdownAfterJobFinishes=true: it is how long the finished cluster is kept before it is deleted, and KubeRay refuses a RayJob that keeps its cluster and has one; set job.ttlSecondsAfterFinished=0 to keep the cluster" (int $j.ttlSecondsAfterFinished)) -}}
{{- end -}}
{{- end -}}

{{/* Pods --------------------------------------------------------------------------------------------------- */}}

{{- define "vidpred.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
{{- with .Values.securityContext.fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "vidpred.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .Values.securityContext.readOnlyRootFilesystem }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Environment of every Ray container: S3 endpoint/region, static keys by reference to an existing Secret (names
only, never values), the user's extra variables.
*/}}
{{- define "vidpred.env" -}}
- name: VIDPRED_CACHE
  value: /tmp/vidpred
{{- with .Values.s3.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
# pyarrow's S3 client sends checksums that S3-compatible servers may reject
- name: AWS_REQUEST_CHECKSUM_CALCULATION
  value: WHEN_REQUIRED
{{- end }}
{{- with .Values.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.s3.credentialsSecret }}
{{- if .name }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .secretAccessKeyKey }}
{{- if .sessionTokenKey }}
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .sessionTokenKey }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "vidpred.tmpVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSize }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .shm }}
{{- end -}}

{{- define "vidpred.tmpMounts" -}}
- name: tmp
  mountPath: /tmp
- name: dshm
  mountPath: /dev/shm
{{- end -}}

{{/*
Checks that checkov (tests/test_k8s_chart.py) reports on these pods and that are skipped on purpose; the test
lifts each pod template out of the RayJob/RayCluster, so the reasons travel with the pod. One place for all.
*/}}
{{- define "vidpred.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_8=KubeRay injects its own liveness probe into every Ray container (raylet and dashboard-agent health); the submitter is a run-to-completion Job pod
checkov.io/skip2: CKV_K8S_9=KubeRay injects its own readiness probe into every Ray container; the submitter is a run-to-completion Job pod
checkov.io/skip3: CKV_K8S_35=the AWS SDKs (boto3, pyarrow) read static S3 keys from the environment; the keys come from an existing Secret by reference, and IRSA/workload identity needs no keys at all
checkov.io/skip4: CKV_K8S_43=pinned by tag by default; set image.digest to pin by digest (the digest of an image built from this repo is not known to the chart)
{{- end -}}

{{/* The RayCluster spec shared by mode train/tune (RayJob.spec.rayClusterSpec) and mode cluster. */}}
{{- define "vidpred.rayClusterSpec" -}}
{{- $fullname := include "vidpred.fullname" . -}}
rayVersion: "2.60.0"
enableInTreeAutoscaling: {{ .Values.autoscaling.enabled }}
{{- if .Values.autoscaling.enabled }}
autoscalerOptions:
  version: {{ .Values.autoscaling.version }}
  upscalingMode: {{ .Values.autoscaling.upscalingMode }}
  idleTimeoutSeconds: {{ .Values.autoscaling.idleTimeoutSeconds }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  resources:
    {{- toYaml .Values.autoscaling.resources | nindent 4 }}
  securityContext:
    {{- include "vidpred.containerSecurityContext" . | nindent 4 }}
  # its root filesystem is read-only too: give it the head pod's /tmp (KubeRay adds /tmp/ray for the logs)
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- if eq .Values.auth.mode "token" }}
authOptions:
  mode: token
{{- end }}
headGroupSpec:
  rayStartParams:
    {{- toYaml .Values.head.rayStartParams | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "vidpred.labels" . | nindent 8 }}
      annotations:
        checksum/config: {{ include "vidpred.config" . | sha256sum }}
        {{- include "vidpred.checkovSkips" . | nindent 8 }}
        {{- if .Values.autoscaling.enabled }}
        checkov.io/skip5: CKV_K8S_38=the in-tree autoscaler in the head pod scales the RayCluster through the Kubernetes API with this token (KubeRay binds it a Role for that)
        {{- end }}
    spec:
      serviceAccountName: {{ include "vidpred.serviceAccountName" . }}
      automountServiceAccountToken: {{ .Values.autoscaling.enabled }}
      securityContext:
        {{- include "vidpred.podSecurityContext" . | nindent 8 }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with .Values.head.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.head.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.head.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: ray-head
          image: {{ include "vidpred.image" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          resources:
            {{- toYaml .Values.head.resources | nindent 12 }}
          securityContext:
            {{- include "vidpred.containerSecurityContext" . | nindent 12 }}
          env:
            {{- include "vidpred.env" . | nindent 12 }}
          volumeMounts:
            {{- include "vidpred.tmpMounts" . | nindent 12 }}
            - name: vidpred-config
              mountPath: /etc/vidpred
              readOnly: true
            {{- with .Values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "vidpred.tmpVolumes" (dict "root" . "shm" .Values.head.shmSize) | nindent 8 }}
        - name: vidpred-config
          configMap:
            name: {{ $fullname }}-config
        {{- with .Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
workerGroupSpecs:
  - groupName: {{ .Values.worker.groupName }}
    replicas: {{ .Values.worker.replicas }}
    minReplicas: {{ .Values.worker.minReplicas }}
    maxReplicas: {{ .Values.worker.maxReplicas }}
    {{- if .Values.autoscaling.enabled }}
    idleTimeoutSeconds: {{ .Values.autoscaling.idleTimeoutSeconds }}
    {{- end }}
    rayStartParams:
      {{- toYaml .Values.worker.rayStartParams | nindent 6 }}
    template:
      metadata:
        labels:
          {{- include "vidpred.labels" . | nindent 10 }}
        annotations:
          {{- include "vidpred.checkovSkips" . | nindent 10 }}
      spec:
        serviceAccountName: {{ include "vidpred.serviceAccountName" . }}
        automountServiceAccountToken: false
        # SIGTERM → SIGKILL when the pod is evicted or its node shuts down (a spot reclaim, a drain)
        terminationGracePeriodSeconds: {{ .Values.worker.terminationGracePeriodSeconds }}
        securityContext:
          {{- include "vidpred.podSecurityContext" . | nindent 10 }}
        {{- with .Values.imagePullSecrets }}
        imagePullSecrets:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .Values.priorityClassName }}
        priorityClassName: {{ . }}
        {{- end }}
        {{- with .Values.worker.nodeSelector }}
        nodeSelector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .Values.worker.tolerations }}
        tolerations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .Values.worker.affinity }}
        affinity:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        containers:
          - name: ray-worker
            image: {{ include "vidpred.image" . }}
            imagePullPolicy: {{ .Values.image.pullPolicy }}
            resources:
              {{- $res := deepCopy .Values.worker.resources }}
              {{- $limits := deepCopy ($res.limits | default dict) }}
              {{- $_ := set $limits .Values.worker.gpuResourceName (int .Values.worker.gpus) }}
              {{- $_ = set $res "limits" $limits }}
              {{- if $res.requests }}
              {{- $requests := deepCopy $res.requests }}
              {{- $_ = set $requests .Values.worker.gpuResourceName (int .Values.worker.gpus) }}
              {{- $_ = set $res "requests" $requests }}
              {{- end }}
              {{- toYaml $res | nindent 14 }}
            securityContext:
              {{- include "vidpred.containerSecurityContext" . | nindent 14 }}
            env:
              {{- include "vidpred.env" . | nindent 14 }}
              # On SIGTERM, ray start drains this node for preemption before it stops (Ray 2.60): Ray Train
              # tells the workers and vidpred checkpoints at its next report point. The drain ends a few
              # seconds before the grace period's SIGKILL.
              - name: RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S
                value: {{ max 1 (sub (int .Values.worker.terminationGracePeriodSeconds) 5) | quote }}
            volumeMounts:
              {{- include "vidpred.tmpMounts" . | nindent 14 }}
              {{- with .Values.extraVolumeMounts }}
              {{- toYaml . | nindent 14 }}
              {{- end }}
        volumes:
          {{- include "vidpred.tmpVolumes" (dict "root" . "shm" .Values.worker.shmSize) | nindent 10 }}
          {{- with .Values.extraVolumes }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
{{- end -}}
