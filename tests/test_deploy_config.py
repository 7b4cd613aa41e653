"""The deployment files are valid and say what the platform really runs.

`compose.yaml` through `docker-compose config`; every kustomize overlay rendered by
`kubectl kustomize` and each object checked against the Kubernetes API's own models (the
official Python client's); the Dockerfiles through hadolint. Every command a service runs is
parsed by the CLI's own parser, so a renamed option breaks this test, not a deployment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from aiplatform.cli import _parser
from aiplatform.workers.broker import QUEUES

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
DOCKERFILES = [ROOT / "deploy" / "Dockerfile", ROOT / "deploy" / "Dockerfile.cuda"]
IN_CI = os.environ.get("CI") == "true"


def tool(name: str) -> str:
    """A command-line tool; CI must have it (`.ci/run` installs it), elsewhere it may be
    missing and the check is skipped."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed")
        pytest.skip(f"{name} is not installed")
    return found


def assert_cli_command(command: list[str]) -> None:
    """The command is `aiplatform ...` and the CLI accepts its arguments."""
    assert command[0] == "aiplatform", command
    arguments = _parser().parse_args(command[1:])
    if arguments.command == "worker":
        queues = arguments.queues.split(",")
        assert set(queues) <= set(QUEUES), queues


# -- compose -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    env = {
        **os.environ,
        "POSTGRES_PASSWORD": "compose-test-password",
        "AIPLATFORM_SECRET_KEY": "k" * 40,
    }
    result = subprocess.run(
        [tool("docker-compose"), "--profile", "gpu", "-f", "compose.yaml", "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_needs_its_secrets_from_the_environment() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD",)}
    env["AIPLATFORM_SECRET_KEY"] = "k" * 40
    result = subprocess.run(
        [tool("docker-compose"), "-f", "compose.yaml", "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr
    example = (ROOT / ".env.example").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "compose.yaml").read_text()))
    assert required == {"POSTGRES_PASSWORD", "AIPLATFORM_SECRET_KEY"}
    for name in required:
        assert re.search(rf"^{name}=$", example, re.MULTILINE), f"{name} not in .env.example"
    tracked = subprocess.run(
        ["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert tracked.stdout == "", "a .env file is committed"


def test_compose_runs_every_part_of_the_platform(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "postgres",
        "redis",
        "migrate",
        "api",
        "projector-worker",
        "inference-worker",
        "data-worker",
        "training-worker",
        "training-worker-gpu",
        "scheduler",
    } <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    assert services["api"]["deploy"]["replicas"] >= 2
    assert services["scheduler"]["deploy"]["replicas"] == 1
    served = set()
    for name, service in services.items():
        command = service.get("command")
        if name in ("postgres", "redis"):
            assert "healthcheck" in service
            continue
        assert_cli_command(command)
        if command[1] == "worker":
            served |= set(_parser().parse_args(command[1:]).queues.split(","))
        # Nothing starts before its database and Redis are healthy.
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        if name != "migrate":
            assert service["depends_on"]["redis"]["condition"] == "service_healthy"
            assert service["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            )
    assert served == set(QUEUES)
    for name, service in services.items():
        command = service.get("command") or []
        if command[1:2] == ["worker"]:
            # A worker waits for its running messages within the container's grace period.
            grace_s = float(service["stop_grace_period"].removesuffix("s"))
            arguments = _parser().parse_args(command[1:])
            assert arguments.shutdown_timeout < grace_s, name
            # Its health check asks for exactly the queues it consumes.
            check = service["healthcheck"]["test"][1:]
            assert_cli_command(check)
            assert _parser().parse_args(check[1:]).queues == arguments.queues, name
    assert "/ready" in " ".join(services["api"]["healthcheck"]["test"])
    gpu = services["training-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "devices" not in str(services["training-worker"].get("deploy", {}))
    assert set(compose["volumes"]) >= {"postgres-data", "redis-data", "platform-data"}


def test_compose_uses_only_settings_the_platform_reads(compose: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    for service in compose["services"].values():
        for name in service.get("environment", {}):
            if name.startswith("AIPLATFORM_"):
                assert f"`{name}`" in readme, f"{name} is not in the README's configuration"


def test_compose_fits_the_compose_specification() -> None:
    check_schema("vendor.compose-spec", ROOT / "compose.yaml")


def check_schema(schema: str, path: Path) -> None:
    """check-jsonschema against one of the schemas it ships (no download)."""
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- CI ------------------------------------------------------------------------------------


def test_the_workflow_runs_the_checks_of_ci_run() -> None:
    workflow_path = ROOT / ".github" / "workflows" / "ci.yml"
    check_schema("vendor.github-workflows", workflow_path)
    workflow = yaml.safe_load(workflow_path.read_text())
    readme = (ROOT / "README.md").read_text()
    [test_command] = [
        line
        for line in readme.splitlines()
        if line.startswith("python3 -m venv .venv &&") and "pytest" in line
    ]
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci_run.splitlines()
    test = workflow["jobs"]["test"]
    steps = [step.get("run", "") for step in test["steps"]]
    assert test_command in steps
    # What .ci/run installs or sets for the tests, the workflow installs or sets too.
    assert "docker-compose" in ci_run
    assert any("install" in run and "docker-compose" in run for run in steps)
    for name, value in re.findall(r"^export (\w+)=(\S+)$", ci_run, re.MULTILINE):
        assert test["env"][name] == value, name
    if "cd web" in test_command:
        node = [s for s in test["steps"] if s.get("uses", "").startswith("actions/setup-node")]
        assert node, "the web checks need Node.js"
    assert test["services"]["postgres"]["image"] == "postgres:15"
    assert test["services"]["redis"]["image"] == "redis:7"
    builds = " ".join(step.get("run", "") for step in workflow["jobs"]["images"]["steps"])
    for dockerfile in DOCKERFILES:
        assert f"docker build -f {dockerfile.relative_to(ROOT)} " in builds
    assert workflow["jobs"]["images"]["needs"] == "test"


# -- Kubernetes ----------------------------------------------------------------------------


def model_class(document: dict[str, Any]) -> type:
    """`apps/v1` `Deployment` -> `V1Deployment`, as the client names the API's models."""
    version = document["apiVersion"].split("/")[-1]
    return getattr(kubernetes.client, version[0].upper() + version[1:] + document["kind"])  # type: ignore[no-any-return]


def schema_errors(value: Any, type_name: str, path: str) -> Iterator[str]:
    """Where `value` does not fit the client's model `type_name`: unknown fields and wrong
    types. (Missing required fields are found by building the model.)"""
    if type_name == "object":  # int-or-string and free-form fields
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            yield f"{path}: expected a list"
            return
        for index, item in enumerate(value):
            yield from schema_errors(item, type_name[5:-1], f"{path}[{index}]")
        return
    if type_name.startswith("dict["):
        if not isinstance(value, dict):
            yield f"{path}: expected a mapping"
            return
        item_type = type_name[5:-1].split(", ", 1)[1]
        for key, item in value.items():
            yield from schema_errors(item, item_type, f"{path}.{key}")
        return
    plain = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if type_name in plain:
        if not isinstance(value, plain[type_name]) or (
            type_name == "int" and isinstance(value, bool)
        ):
            yield f"{path}: expected {type_name}, got {value!r}"
        return
    if type_name == "datetime":
        return
    klass = getattr(kubernetes.client, type_name)
    if not isinstance(value, dict):
        yield f"{path}: expected a {type_name} mapping"
        return
    fields = {json_name: attr for attr, json_name in klass.attribute_map.items()}
    for key, item in value.items():
        if key not in fields:
            yield f"{path}.{key}: not a field of {type_name}"
            continue
        yield from schema_errors(item, klass.openapi_types[fields[key]], f"{path}.{key}")


class _Response:
    def __init__(self, data: str):
        self.data = data


def build_model(document: dict[str, Any]) -> Any:
    """The client's deserializer raises ValueError for a required field that is missing."""
    import json

    client = kubernetes.client.ApiClient()
    return client.deserialize(_Response(json.dumps(document)), model_class(document).__name__)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / request.param)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def test_manifests_fit_the_kubernetes_schemas(rendered: list[dict[str, Any]]) -> None:
    examples = [yaml.safe_load((K8S / "base" / "secret.example.yaml").read_text())]
    for document in rendered + examples:
        name = f"{document['kind']}/{document['metadata']['name']}"
        errors = list(schema_errors(document, model_class(document).__name__, name))
        assert errors == []
        build_model(document)


def test_schema_check_finds_mistakes() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "replicas": "two",
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"containers": [{"name": "c", "imagePullPolicy": 1}]}},
            "replica": 1,
        },
    }
    errors = list(schema_errors(deployment, "V1Deployment", "d"))
    assert errors == [
        "d.spec.replicas: expected int, got 'two'",
        "d.spec.template.spec.containers[0].imagePullPolicy: expected str, got 1",
        "d.spec.replica: not a field of V1DeploymentSpec",
    ]
    deployment["spec"] = {"template": {"spec": {"containers": [{"name": "c"}]}}}
    with pytest.raises(ValueError, match="selector"):
        build_model(deployment)


def containers(documents: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for document in documents:
        if document["kind"] in ("Deployment", "Job"):
            pod = document["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                yield document["metadata"]["name"], container


def test_manifests_run_the_platform(rendered: list[dict[str, Any]]) -> None:
    deployments = by_kind(rendered, "Deployment")
    assert set(deployments) == {
        "aiplatform-api",
        "aiplatform-projector-worker",
        "aiplatform-inference-worker",
        "aiplatform-data-worker",
        "aiplatform-training-worker",
        "aiplatform-scheduler",
    }
    served = set()
    for name, container in containers(rendered):
        assert_cli_command(container["command"])
        if container["command"][1] == "worker":
            arguments = _parser().parse_args(container["command"][1:])
            served |= set(arguments.queues.split(","))
            grace_s = deployments[name]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            assert arguments.shutdown_timeout < grace_s, name
            probe = container["livenessProbe"]["exec"]["command"]
            assert_cli_command(probe)
            assert _parser().parse_args(probe[1:]).queues == arguments.queues, name
        sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {"aiplatform-config", "aiplatform-secrets"}
    assert served == set(QUEUES)
    [migrate] = by_kind(rendered, "Job").values()
    assert migrate["spec"]["template"]["spec"]["containers"][0]["command"][1] == "migrate"

    api = deployments["aiplatform-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    scheduler = deployments["aiplatform-scheduler"]["spec"]
    assert scheduler["replicas"] == 1
    assert scheduler["strategy"]["type"] == "Recreate"

    [hpa] = by_kind(rendered, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "aiplatform-api"
    assert hpa["spec"]["minReplicas"] >= 2
    labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    for budget in by_kind(rendered, "PodDisruptionBudget").values():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= pod.items() for pod in labels.values()), budget
    for service in by_kind(rendered, "Service").values():
        assert any(service["spec"]["selector"].items() <= pod.items() for pod in labels.values())
    secret = yaml.safe_load((K8S / "base" / "secret.example.yaml").read_text())
    config = yaml.safe_load((K8S / "base" / "configmap.yaml").read_text())
    readme = (ROOT / "README.md").read_text()
    for name in [*secret["stringData"], *config["data"]]:
        assert f"`{name}`" in readme, f"{name} is not in the README's configuration"


def test_production_training_workers_get_gpus() -> None:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / "production")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    training = by_kind(documents, "Deployment")["aiplatform-training-worker"]
    [container] = training["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "cuda" in container["image"]
    # Time to save a checkpoint of a large model before the job is handed back.
    assert _parser().parse_args(container["command"][1:]).shutdown_timeout >= 60


# -- Dockerfiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_multi_stage_and_run_unprivileged(dockerfile: Path) -> None:
    lines = [line.split() for line in dockerfile.read_text().splitlines() if line.strip()]
    bases = [words[1] for words in lines if words[0] == "FROM"]
    assert len(bases) >= 2
    for base in bases:
        if ":" in base:
            assert not base.endswith(":latest"), base
    users = [words[1] for words in lines if words[0] == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text()
    assert ignore.splitlines()[0] == "**"  # the build context is only what is listed
