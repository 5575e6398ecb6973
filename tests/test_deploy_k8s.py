"""deploy/k8s: the manifests agree with each other and with the program. (Their schema is
checked against the Kubernetes API by .ci/lint-deploy with kubernetes-validate --strict; here
too when it is installed.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from downloader.cli import build_parser
from downloader.config.load import parse_config
from downloader.core.sharding import index_from_environment

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


DOCS = documents()
JOB = DOCS[("Job", "gio-downloader-backfill")]
SET = DOCS[("StatefulSet", "gio-downloader")]
CONFIG_TEXT = DOCS[("ConfigMap", "gio-downloader-config")]["data"]["config.yaml"]


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("GIO_TOKEN", "GIO_CLIENT_ID"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    return parse_config(CONFIG_TEXT, Path("config.yaml"))


def test_the_configmap_is_a_valid_sharded_config_on_s3(config: Any) -> None:
    assert config.storage.scheme == "s3"
    assert config.sharding.count == 3
    assert str(config.checkpoint) == "/var/lib/gio-downloader/checkpoint.db"


def test_instance_counts_agree_with_sharding_count(config: Any) -> None:
    spec = JOB["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == config.sharding.count
    assert SET["spec"]["replicas"] == config.sharding.count


def test_each_pod_finds_its_own_index() -> None:
    # StatefulSet pods are named <name>-<ordinal>; the Job sets JOB_COMPLETION_INDEX.
    name = SET["metadata"]["name"]
    assert [index_from_environment({}, f"{name}-{i}") for i in range(3)] == [0, 1, 2]
    assert index_from_environment({"JOB_COMPLETION_INDEX": "2"}, "gio-downloader-backfill-2-x") \
        == 2


@pytest.mark.parametrize("workload", [JOB, SET], ids=["job", "statefulset"])
def test_each_instance_has_its_own_checkpoint_volume(workload: dict[str, Any],
                                                     config: Any) -> None:
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
    for container in pod["containers"] + pod.get("initContainers", []):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        state = mounts[str(config.checkpoint.parent)]
        # Per pod: a claim from the StatefulSet's template, or the pod's own emptyDir. Never
        # a shared claim (SQLite's locks do not hold on network file systems).
        assert state in claims or "emptyDir" in volumes[state]
        assert "persistentVolumeClaim" not in volumes.get(state, {})
        assert volumes[mounts["/etc/gio-downloader"]]["configMap"]["name"] == \
            "gio-downloader-config"


@pytest.mark.parametrize("workload", [JOB, SET], ids=["job", "statefulset"])
def test_the_commands_are_ones_the_cli_takes(workload: dict[str, Any]) -> None:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.config == "/etc/gio-downloader/config.yaml"
    assert args.command == ("backfill" if workload is JOB else "run")
    if workload is JOB:
        assert args.days == 15


def test_the_manifests_match_the_kubernetes_schema() -> None:
    kv = pytest.importorskip("kubernetes_validate",
                             reason=".ci/lint-deploy installs it and checks the schema")
    for doc in DOCS.values():
        kv.validate(doc, "1.30.0", strict=True)
