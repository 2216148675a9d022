"""Generates the Python stubs of the lefi party API from the repository's proto/ files.

Nothing generated is committed: the stubs are written under a cache directory (by default
`examples/python/.stubs/`, ignored by git), in a subdirectory named after a hash of the proto
files, so a changed contract is regenerated on the next start and several clients starting at once
never see a half-written directory (each generates into a temporary directory and renames it into
place; the first rename wins).

    python3 generate.py                  # prints the directory the stubs are in
    python3 generate.py --proto ../../proto --out /tmp/lefi-stubs

Only `lefi/v1/*.proto` (the party API) is generated. `google/rpc/*.proto` in proto/ is NOT: the
`google.rpc` messages (Status, ErrorInfo) come from the googleapis-common-protos package, and
generating them a second time would register the same proto files twice.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
DEFAULT_OUT_DIR = os.path.join(HERE, ".stubs")
PACKAGE = os.path.join("lefi", "v1")


def _proto_files(proto_dir: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(proto_dir, PACKAGE, "*.proto")))
    if not files:
        raise SystemExit(f"no .proto files under {os.path.join(proto_dir, PACKAGE)}")
    return files


def _digest(proto_dir: str, files: list[str]) -> str:
    """A hash of the proto files' names and contents (and of the generator's version)."""
    import grpc_tools  # noqa: F401  (only for its version below)
    from importlib.metadata import version

    h = hashlib.sha256(version("grpcio-tools").encode())
    for path in files:
        h.update(os.path.relpath(path, proto_dir).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def ensure_stubs(proto_dir: str = DEFAULT_PROTO_DIR, out_dir: str = DEFAULT_OUT_DIR) -> str:
    """Returns a directory holding `lefi/v1/*_pb2*.py` for the current proto files, generating it
    first if needed. Put it on sys.path to import `lefi.v1.delivery_pb2` and friends."""
    import grpc_tools
    from grpc_tools import protoc

    files = _proto_files(proto_dir)
    target = os.path.join(out_dir, _digest(proto_dir, files))
    if os.path.isdir(target):
        return target
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gen-", dir=out_dir)
    try:
        # protoc's own well-known types (google/protobuf/*.proto) ship with grpcio-tools.
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        args = [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(os.path.relpath(f, proto_dir) for f in files),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed to generate the stubs (see the messages above)")
        try:
            os.rename(tmp, target)
        except OSError:
            # Another client generated the same stubs meanwhile: use theirs.
            if not os.path.isdir(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proto", default=DEFAULT_PROTO_DIR, help="the proto/ directory (default: the repository's)")
    parser.add_argument("--out", default=DEFAULT_OUT_DIR, help="the cache directory (default: %(default)s)")
    args = parser.parse_args()
    print(ensure_stubs(os.path.abspath(args.proto), os.path.abspath(args.out)))


if __name__ == "__main__":
    sys.exit(main())
