"""Hashing and atomic file writes, shared by every stage (no torch: cheap to import).

Every output is written whole or not at all: a temp file in the same folder, flushed, fsync'ed and
renamed onto the final name (os.replace, atomic on POSIX).
"""

import contextlib
import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path



def sha256_file(path, chunk_size=1 << 20):
    """sha256 hex digest of a file, read in chunks (works for multi-GB files)."""
    return _hash_file(path, hashlib.sha256(), chunk_size)


def _hash_file(path, h, chunk_size):
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder):
    # make the rename itself durable; not every platform/filesystem allows opening a directory
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Context manager: yields a file object for a temp file next to `path`; on a clean exit the
    data is flushed, fsync'ed and renamed onto `path` (os.replace, atomic on POSIX). On an exception
    the temp file is removed and `path` is left untouched. mode: "wb" (bytes) or "w" (utf-8 text)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; make the result readable like a normal file
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a file-size limit, a quota: say which file, keep the old one
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise OSError(err.errno, f"could not write {path} ({err.strerror or err}); nothing was left under its "
                                 f"name and any earlier version is intact. Free space (or raise the limit) and rerun") from err
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def remove_stale_temps(path) -> list[Path]:
    """Remove the temp files atomic_write left beside `path` when its process was killed mid-write
    (SIGKILL skips the cleanup). Call only where nothing else writes `path` at the same time."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")) if path.parent.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_bytes(path, data):
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text):
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
