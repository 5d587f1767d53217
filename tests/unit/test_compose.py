"""docker-compose.yml cannot run here (no Docker engine): check it statically against the code."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from darkroom.cli import main as cli
from darkroom.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that understands compose's `!reset` / `!override` tags."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)
ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_mapping(node))


def load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)  # noqa: S506 - safe subclass


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


def darkroom_services(compose: dict) -> dict:
    return {name: svc for name, svc in compose["services"].items() if svc.get("build")}


def test_darkroom_commands_exist(compose):
    services = darkroom_services(compose)
    assert set(services) == {"api", "worker", "flower"}
    for name, svc in services.items():
        if name == "flower":
            continue  # Celery's monitor from the same image (next test)
        command = svc["command"]
        assert command[0] == "darkroom"
        assert command[1] in cli.commands, f"darkroom has no `{command[1]}` command"


def test_flower_watches_the_broker_from_the_darkroom_image(compose):
    flower = compose["services"]["flower"]
    assert flower["command"][0] == "celery" and "flower" in flower["command"]
    assert "--broker=redis://redis:6379/0" in flower["command"]
    assert compose["x-darkroom-env"]["DARKROOM_REDIS_URL"] == "redis://redis:6379/0"
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])  # it can control workers
    assert "ops" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert 'pip install ".[server,ops]"' in (ROOT / "Dockerfile").read_text()
    assert flower["build"]["target"] == "api"


def test_every_darkroom_variable_is_a_setting(compose):
    for name in ("docker-compose.yml", "docker-compose.cpu.yml"):
        for svc_name, svc in load(name)["services"].items():
            for var in (svc or {}).get("environment", {}) or {}:
                if var.startswith("DARKROOM_"):
                    field = var.removeprefix("DARKROOM_").lower()
                    assert field in Settings.model_fields, f"{name}:{svc_name} sets unknown {var}"


def test_redis_is_durable_and_services_wait_for_health(compose):
    redis_cmd = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd
    for name in ("api", "worker"):
        deps = compose["services"][name]["depends_on"]
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["create-bucket"]["condition"] == "service_completed_successfully"
    for name in ("redis", "minio", "api"):
        assert compose["services"][name]["healthcheck"]["test"]
    gpu = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert load("docker-compose.cpu.yml")["services"]["worker"]["environment"]["DARKROOM_DEVICE"] == "cpu"


def test_api_image_is_torch_free_and_the_worker_image_has_the_models(compose):
    text = (ROOT / "Dockerfile").read_text()
    api_stage = text[text.index("FROM base AS api"):text.index("FROM base AS worker")]
    instructions = "\n".join(line for line in api_stage.splitlines() if not line.lstrip().startswith("#"))
    assert "torch" not in instructions.lower() and "[worker]" not in instructions
    assert 'pip install ".[worker]"' in text[text.index("AS worker"):]
    assert "install -y --no-install-recommends g++" in text[text.index("AS worker"):]  # fused kernels
    assert compose["services"]["api"]["build"]["target"] == "api"
    assert compose["services"]["worker"]["build"]["target"] == "worker"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any(dep.startswith("torch") for dep in extras["server"])
    assert any(dep.startswith("torch") for dep in extras["worker"])


def test_dockerfile_copies_every_package():
    text = (ROOT / "Dockerfile").read_text()
    for package in ("darkroom", "api", "worker", "storage"):
        assert f"COPY {package} ./{package}" in text


def test_images_are_pinned_to_released_tags(compose):
    for name, svc in compose["services"].items():
        if svc.get("build"):
            continue  # Darkroom's own images, built from this tree
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and any(c.isdigit() for c in tag), f"{name}: {image} is not a released tag"
        if "minio" in repo:
            assert repo.startswith("quay.io/minio/"), f"{name}: Docker Hub no longer serves {repo}"
            assert tag.startswith("RELEASE."), f"{name}: {image}"
        if name == "redis":
            assert tag.count(".") == 2, f"{name}: {image} should name a patch release"


def test_result_urls_are_presigned_for_an_address_the_host_reaches(compose):
    env = compose["x-darkroom-env"]
    assert env["DARKROOM_S3_ENDPOINT_URL"] == "http://minio:9000"  # inside the compose network
    assert env["DARKROOM_S3_PUBLIC_ENDPOINT_URL"] == "${DARKROOM_S3_PUBLIC_ENDPOINT_URL:-http://localhost:9000}"
    assert "9000:9000" in compose["services"]["minio"]["ports"]
    for name in ("api", "worker"):
        assert compose["services"][name]["environment"]["DARKROOM_S3_PUBLIC_ENDPOINT_URL"]


def test_the_cpu_worker_builds_the_cpu_torch():
    worker = load("docker-compose.cpu.yml")["services"]["worker"]
    assert worker["build"]["args"]["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert 'ARG TORCH_INDEX=""' in (ROOT / "Dockerfile").read_text()


def test_the_api_sees_the_models_the_workers_pull():
    """The API refuses a pipeline model step whose model is not on disk, so it must see the same folder
    (read-only) as the workers."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("api", "worker"):
        assert services[name]["environment"]["DARKROOM_MODELS_DIR"] == "/models", name
    assert "models:/models:ro" in services["api"]["volumes"]
    assert "models:/models" in services["worker"]["volumes"]
