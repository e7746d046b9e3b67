"""Packs the Dify plugin: `python integrations/dify/pack.py` writes
`dist/memory_service-<version>.difypkg` (run it with the project's environment, e.g.
`.venv/bin/python`, since the tool definitions are read from the service package).

A .difypkg is a zip of the plugin directory, files at its root, in the layout the Dify plugin
docs describe: manifest.yaml, main.py, requirements.txt, _assets/, provider/, tools/. This adds
what is not kept twice in this folder:

- tools/<name>.yaml for every tool, made from the service's own tool manifests
  (memory_service/tools/manifests) plus the `extra.python.source` Dify needs, and the provider's
  `tools:` list naming them;
- the memory-service Python client the tool classes use, copied into memory_service/ (it needs
  only httpx and msgspec, both in requirements.txt).

`--dir DIR` writes the unpacked tree instead (for `python -m main` remote debugging, or tests).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import zipfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))  # the service package, when run from a checkout

from memory_service import __version__  # noqa: E402
from memory_service.tools import catalogue  # noqa: E402
from memory_service.tools.manifest import manifest_dict  # noqa: E402

# Copied as they are (relative to this folder).
PLUGIN_FILES = ["main.py", "requirements.txt", "README.md", "PRIVACY.md"]
PLUGIN_DIRS = ["_assets", "provider", "tools"]
PROVIDER = "provider/memory_service.yaml"
# The client and the wire module it shares with the server; nothing of the server.
VENDORED = [
    "memory_service/__init__.py",
    "memory_service/client/__init__.py",
    "memory_service/client/_protocol.py",
    "memory_service/client/aio.py",
    "memory_service/client/errors.py",
    "memory_service/client/sync.py",
    "memory_service/wire/__init__.py",
    "memory_service/wire/errors.py",
    "memory_service/wire/messages.py",
]
YAML_OPTIONS = {"sort_keys": False, "allow_unicode": True, "width": 100}


class PackError(Exception):
    pass


def tool_yaml(name: str) -> str:
    """The Dify tool YAML of one service tool: its manifest, and the class that runs it."""
    data = manifest_dict(catalogue.get_tool(name).manifest)
    data["extra"] = {"python": {"source": f"tools/{name}.py"}}
    return yaml.safe_dump(data, **YAML_OPTIONS)


def plugin_files() -> dict[str, bytes]:
    """Every file of the package, by its path inside it."""
    names = list(catalogue.tools())
    classes = sorted(p.stem for p in (HERE / "tools").glob("*.py") if not p.stem.startswith("_"))
    if sorted(names) != classes:
        raise PackError(
            f"the plugin's tool classes ({', '.join(classes)}) must match the service's tools "
            f"({', '.join(sorted(names))}): add or remove integrations/dify/tools/<name>.py"
        )
    files: dict[str, bytes] = {}
    for rel in PLUGIN_FILES:
        files[rel] = (HERE / rel).read_bytes()
    for folder in PLUGIN_DIRS:
        for path in sorted((HERE / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(HERE).as_posix()] = path.read_bytes()
    manifest = yaml.safe_load((HERE / "manifest.yaml").read_text(encoding="utf-8"))
    manifest["version"] = __version__
    files["manifest.yaml"] = yaml.safe_dump(manifest, **YAML_OPTIONS).encode()
    provider = yaml.safe_load((HERE / PROVIDER).read_text(encoding="utf-8"))
    provider["tools"] = [f"tools/{name}.yaml" for name in names]
    files[PROVIDER] = yaml.safe_dump(provider, **YAML_OPTIONS).encode()
    for name in names:
        files[f"tools/{name}.yaml"] = tool_yaml(name).encode()
    for rel in VENDORED:
        files[rel] = (REPO / rel).read_bytes()
    return dict(sorted(files.items()))


def write_dir(target: Path) -> Path:
    files = plugin_files()
    if target.exists():
        shutil.rmtree(target)
    for rel, data in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return target


def write_package(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"memory_service-{__version__}.difypkg"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in plugin_files().items():
            info = zipfile.ZipInfo(rel, date_time=(2026, 1, 1, 0, 0, 0))  # reproducible bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    target.write_bytes(buffer.getvalue())
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="folder of the .difypkg")
    parser.add_argument("--dir", type=Path, help="write the unpacked plugin tree here instead")
    args = parser.parse_args(argv)
    try:
        path = write_dir(args.dir) if args.dir else write_package(args.out)
    except PackError as exc:
        print(f"pack: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
