"""Bundles as .tar files: pack one, and open a directory-or-tar safely for verification/installation.

Extraction uses tarfile's "data" filter (no absolute paths, no links or files outside the target,
no device files, no setuid bits) and a size limit, so a hostile archive cannot write outside a
temporary directory before the signature has even been checked.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.errors import BundleIntegrityError
from agent.inference.manifest import MANIFEST_NAME

MAX_UNPACKED_BYTES = 2 << 30  # 2 GiB: far above any real bundle, stops tar bombs


def pack(bundle_dir: Path, tar_path: Path) -> Path:
    """Write `bundle_dir` as an uncompressed tar with one top-level directory (sorted, no owners)."""
    bundle_dir = Path(bundle_dir)

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(tar_path, "w") as tf:
        for path in sorted(bundle_dir.rglob("*")):
            arcname = f"{bundle_dir.name}/{path.relative_to(bundle_dir).as_posix()}"
            tf.add(path, arcname=arcname, recursive=False, filter=clean)
    return Path(tar_path)


@contextmanager
def opened_bundle(path: Path) -> Iterator[Path]:
    """Yield a directory holding the bundle: `path` itself, or a safe extraction of a .tar."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise BundleIntegrityError(f"bundle {path} does not exist", fix="pass a bundle directory or .tar")
    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError as exc:
        raise BundleIntegrityError(f"cannot read {path} ({exc})", fix="check the file") from exc
    if not is_tar:
        raise BundleIntegrityError(
            f"{path} is neither a bundle directory nor a tar archive",
            fix="pass the directory written by `agent-export bundle`, or its .tar",
        )
    with tempfile.TemporaryDirectory(prefix="lews-bundle-") as tmp:
        try:
            with tarfile.open(path) as tf:
                members = tf.getmembers()
                total = sum(m.size for m in members)
                if total > MAX_UNPACKED_BYTES:
                    raise BundleIntegrityError(
                        f"{path} would unpack to {total} bytes (limit {MAX_UNPACKED_BYTES})",
                        fix="this is not a model bundle",
                    )
                tf.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleIntegrityError(
                f"{path}: unsafe, truncated or corrupt tar archive ({type(exc).__name__}: {exc})",
                fix="copy the bundle archive again from its source",
            ) from exc
        root = Path(tmp)
        if not (root / MANIFEST_NAME).is_file():
            subdirs = [p for p in root.iterdir() if p.is_dir()]
            if len(subdirs) == 1:
                root = subdirs[0]
        yield root
