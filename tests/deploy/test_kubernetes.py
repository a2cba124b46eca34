"""The Kubernetes manifests in deploy/kubernetes/, checked offline.

``kubernetes-validate`` ships the API schemas: every document must validate strictly
(unknown fields refused) with the network switched off. Then the pieces must fit: the
Service selects the scheduler's pods, workers dial that Service, the token and TLS files
come from Secret volumes, and every flag is one the ``shoal`` command knows.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import click
import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")

from shoal.cli import main as shoal_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
K8S_VERSION = "1.30.0"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in MANIFESTS:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the validator tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_there_are_manifests() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in documents())
    assert kinds == [
        ("Deployment", "shoal-scheduler"),
        ("Deployment", "shoal-worker"),
        ("Secret", "shoal-tls"),
        ("Secret", "shoal-token"),
        ("Service", "shoal-scheduler"),
    ]


@pytest.mark.parametrize("version", [K8S_VERSION, kubernetes_validate.latest_version()])
def test_every_document_validates_strictly_offline(offline: None, version: str) -> None:
    for doc in documents():
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_broken_manifest(offline: None) -> None:
    broken = find("Deployment", "shoal-worker")
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    unknown = find("Service", "shoal-scheduler")
    unknown["spec"]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, K8S_VERSION, strict=True)


def container(deployment: str) -> dict[str, Any]:
    [c] = find("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return c


def flags(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            out[name] = value
    return out


def test_the_service_selects_the_scheduler_and_workers_dial_it() -> None:
    scheduler = find("Deployment", "shoal-scheduler")
    service = find("Service", "shoal-scheduler")
    pod_labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    worker_pods = find("Deployment", "shoal-worker")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= worker_pods.items()
    comm_port = flags(container("shoal-scheduler")["args"])["--port"]
    [port] = [p for p in service["spec"]["ports"] if p["name"] == "comm"]
    assert str(port["port"]) == comm_port
    target = container("shoal-worker")["args"][1]
    assert target.endswith(f"://{service['metadata']['name']}:{port['port']}")


@pytest.mark.parametrize("deployment", ["shoal-scheduler", "shoal-worker"])
def test_token_and_tls_come_from_secret_volumes(deployment: str) -> None:
    pod = find("Deployment", deployment)["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    given = flags(container(deployment)["args"])
    for flag, secret in [("--token-file", "shoal-token"), ("--tls-ca-file", "shoal-tls"),
                         ("--tls-cert", "shoal-tls"), ("--tls-key", "shoal-tls")]:  # fmt: skip
        [volume] = [name for name, s in secrets.items() if s == secret]
        path = Path(given[flag])
        assert path.parent == Path(mounts[volume]), flag
        data = find("Secret", secret)["stringData"]
        assert path.name in data, f"{flag}: {path.name} is not a key of Secret {secret}"


def _cli_options(command: str) -> set[str]:
    cmd = shoal_cli.commands[command]
    assert isinstance(cmd, click.Command)
    names: set[str] = set()
    for param in cmd.params:
        names.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return names


@pytest.mark.parametrize(("deployment", "command"), [("shoal-scheduler", "scheduler"),
                                                     ("shoal-worker", "worker")])  # fmt: skip
def test_every_flag_is_one_the_cli_knows(deployment: str, command: str) -> None:
    args = container(deployment)["args"]
    assert args[0] == command
    unknown = set(flags(args)) - _cli_options(command)
    assert not unknown, f"shoal {command} has no {sorted(unknown)}"


def test_the_image_runs_the_shoal_command_on_the_manifests_ports() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["shoal"]' in dockerfile
    assert "pip install --no-cache-dir ." in dockerfile
    exposed = {p for line in dockerfile.splitlines() if line.startswith("EXPOSE")
               for p in line.split()[1:]}  # fmt: skip
    ports = {str(p["containerPort"]) for p in container("shoal-scheduler")["ports"]}
    assert ports <= exposed
