#!/usr/bin/env python3
"""Generates the Python stubs of hera.migration.v2 from the repository's protos.

    python3 clients/python/generate.py

runs, from this directory,

    python -m grpc_tools.protoc -I ../../proto --python_out=generated \
        --grpc_python_out=generated --pyi_out=generated \
        hera/migration/v2/migration.proto hera/migration/v2/rollout.proto

and writes generated/hera/migration/v2/{migration,rollout}_pb2{,_grpc}.py(i),
which are never committed (.gitignore). `ensure()` regenerates them only when
they are missing or older than a proto; example.py calls it on every run.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
# MigrationService, and RolloutService (fleet rollouts), which imports it.
PROTOS = ["hera/migration/v2/migration.proto", "hera/migration/v2/rollout.proto"]
OUT = HERE / "generated"
STUBS = [
    OUT / "hera/migration/v2" / f"{Path(proto).stem}{suffix}"
    for proto in PROTOS
    for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
]


def generate() -> None:
    """Runs grpc_tools.protoc on our proto into generated/."""
    OUT.mkdir(exist_ok=True)
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        "-I", str(PROTO_ROOT),
        f"--python_out={OUT}", f"--grpc_python_out={OUT}", f"--pyi_out={OUT}",
        *PROTOS,
    ]
    subprocess.run(command, check=True, cwd=HERE)


def ensure() -> None:
    """Generates the stubs when missing or older than a proto, and puts
    generated/ on sys.path so `from hera.migration.v2 import ...` works."""
    proto_mtime = max((PROTO_ROOT / proto).stat().st_mtime for proto in PROTOS)
    if any(not stub.exists() or stub.stat().st_mtime < proto_mtime for stub in STUBS):
        generate()
    if str(OUT) not in sys.path:
        sys.path.insert(0, str(OUT))


if __name__ == "__main__":
    generate()
    print(f"generated {', '.join(str(stub.relative_to(HERE)) for stub in STUBS)}")
