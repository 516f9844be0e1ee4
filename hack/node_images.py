"""Images for the real node without a registry: the pause and CoreDNS images assembled from static
binaries (no Docker needed), the project's serving and operator images built from the Dockerfiles
by the Docker engine, all imported into the node's containerd.

Each image is made and imported only when its content changed: project images are tagged with a
hash of the files they are built from, so a present tag is an up-to-date image. Standard library
only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import real_node

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
COREDNS_REPO = "mlrollout.local/coredns"
# What each project image is built from (its Dockerfile's COPY sources): the tag hashes these.
PROJECT_IMAGES = {
    "mlrollout-serving": ("Dockerfile.serving", ("pyproject.toml", "README.md", "serving", "operator")),
    "mlrollout-operator": ("Dockerfile.operator", ("pyproject.toml", "README.md", "serving", "operator")),
    "mlrollout-loadgen": ("benchmarks/load/Dockerfile", ("benchmarks/load/locustfile.py",)),
}


@dataclass(frozen=True)
class NodeImage:
    ref: str
    seconds: float  # spent making and importing it in this call (0 when it was already there)


def _log(msg: str) -> None:
    print(f"[node-images] {msg}", flush=True, file=__import__("sys").stderr)


def present(ref: str) -> bool:
    out = real_node.ctr("images", "ls", "-q", check=False)
    return ref in out.split() or f"docker.io/library/{ref}" in out.split()


def scratch_image_tar(ref: str, files: dict[str, Path], entrypoint: list[str], out: Path) -> None:
    """A one-layer image (Docker archive format, what `docker save` writes) holding only `files`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for inside, host in sorted(files.items()):
            info = tar.gettarinfo(str(host), arcname=inside.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755
            with host.open("rb") as fh:
                tar.addfile(info, fh)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "0:0"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "hack/node_images.py", "created": "1970-01-01T00:00:00Z"}],
        "created": "1970-01-01T00:00:00Z",
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": ["layer/layer.tar"]}]
    with tarfile.open(out, "w") as tar:
        for name, data in (
            ("layer/layer.tar", layer_bytes),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def import_tar(path: Path) -> None:
    real_node.ctr("images", "import", str(path), timeout=900)


def ensure_scratch(ref: str, files: dict[str, Path], entrypoint: list[str]) -> NodeImage:
    if present(ref):
        return NodeImage(ref, 0.0)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "image.tar"
        scratch_image_tar(ref, files, entrypoint, tar)
        import_tar(tar)
    return NodeImage(ref, time.monotonic() - started)


def pause_binary() -> Path:
    """Built from hack/pause (a few lines of Go), cached by the hash of its source."""
    src = HACK / "pause"
    digest = hashlib.sha256((src / "main.go").read_bytes()).hexdigest()[:12]
    out = real_node.cache_root() / "node" / f"pause-{digest}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
        proc = subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", f"{out}.tmp", "."],
            cwd=src, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise real_node.NodeError(f"building the pause binary failed: {proc.stderr[-2000:]}")
        Path(f"{out}.tmp").rename(out)
    return out


def ensure_system_images(bin_dir: Path, coredns_version: str) -> list[NodeImage]:
    return [
        ensure_scratch(real_node.PAUSE_IMAGE, {"/pause": pause_binary()}, ["/pause"]),
        ensure_scratch(coredns_ref(coredns_version), {"/coredns": bin_dir / "coredns"}, ["/coredns"]),
    ]


def coredns_ref(version: str) -> str:
    return f"{COREDNS_REPO}:{version}"


# --------------------------------------------------------------------------- project images
def source_hash(dockerfile: str, sources: tuple[str, ...]) -> str:
    """Hash of the files an image is built from (ignoring caches), i.e. its content tag."""
    h = hashlib.sha256()
    paths = [ROOT / dockerfile]
    for s in sources:
        p = ROOT / s
        paths.extend(sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p])
    for p in paths:
        rel = p.relative_to(ROOT).as_posix()
        if "__pycache__" in rel or rel.endswith((".pyc", ".pyo")):
            continue
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def project_ref(name: str) -> str:
    dockerfile, sources = PROJECT_IMAGES[name]
    return f"{name}:src-{source_hash(dockerfile, sources)}"


def _docker(*args: str, timeout: float = 1800, log: Path | None = None) -> str:
    if log is None:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
        out = proc.stdout + proc.stderr
    else:
        with log.open("a") as fh:
            proc = subprocess.run(
                ["docker", *args], stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        out = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise real_node.NodeError(f"docker {' '.join(args[:3])}... failed:\n{out[-4000:]}")
    return proc.stdout if log is None else ""


def ensure_project_image(name: str, log_dir: Path) -> NodeImage:
    """Build (when its sources changed) and import one of the project's images."""
    ref = project_ref(name)
    if present(ref):
        return NodeImage(ref, 0.0)
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(HACK / "docker-engine.sh")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise real_node.NodeError(f"hack/docker-engine.sh failed: {proc.stderr[-2000:]}")
    # The ref is taken once: sources edited during the build must not make us import another tag.
    build_project_image(name, log_dir, ref)
    _log(f"importing {ref} into the node's containerd")
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "image.tar"
        _docker("save", "-o", str(tar), ref)
        import_tar(tar)
    prune_older(name, keep=ref)
    return NodeImage(ref, time.monotonic() - started)


def prune_older(name: str, keep: str) -> None:
    """Drop the node's other builds of `name` (running containers keep their snapshots), so the
    persistent containerd root does not grow by an image per source change."""
    for ref in real_node.ctr("images", "ls", "-q", check=False).split():
        short = ref.removeprefix("docker.io/library/")
        if short.startswith(f"{name}:src-") and short != keep:
            real_node.ctr("images", "rm", ref, check=False)


def build_project_image(name: str, log_dir: Path, ref: str | None = None) -> str:
    """Only the Docker build (no import): for warming the cache before the node runs. `ref` is the
    tag to build (default: the current sources' hash)."""
    ref = ref or project_ref(name)
    if subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False).returncode == 0:
        return ref
    base = subprocess.run(["bash", str(HACK / "base-image.sh")], capture_output=True, text=True, check=False)
    if base.returncode != 0:
        raise real_node.NodeError(f"hack/base-image.sh failed: {base.stderr[-2000:]}")
    log_dir.mkdir(parents=True, exist_ok=True)
    _log(f"docker build {ref}")
    _docker(
        "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base.stdout.strip().splitlines()[-1]}",
        "-f", str(ROOT / PROJECT_IMAGES[name][0]), "-t", ref, str(ROOT),
        log=log_dir / f"docker-build-{name}.log",
    )  # fmt: skip
    tags = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", name],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    stale = [t for t in tags if t.startswith(f"{name}:src-") and t != ref]
    if stale:
        subprocess.run(["docker", "image", "rm", *stale], capture_output=True, check=False)
    return ref


if __name__ == "__main__":
    import sys

    for image_name in sys.argv[1:]:
        print(build_project_image(image_name, ROOT / ".local" / "images"))
