"""Downloads, md5 checks and archive extraction, through `torchvision.datasets.utils`.

torchvision does the work (download_url, calculate_md5, extract_archive); what it lacks is added
here, each with its reason:
- a timeout: download_url opens its connections without one, so an offline machine would hang;
- a partial download never under the final name: download_url writes straight into it;
- mirrors tried in order with every error kept, so the final message lists what failed and says
  what to stage by hand;
- a found file with the wrong md5 is reported, never overwritten (it may be the user's own copy);
- extraction into a temporary folder, with tarfile's "data" filter (torchvision extracts in place
  with no filter: a damaged archive leaves half a folder, a hostile one can write anywhere).
torchvision is imported inside the functions: planning imports this package without torch.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import logging
import os
import socket
import tarfile
import tempfile
import urllib.error
import zlib
from pathlib import Path

from ..fileio import _fsync_dir
from .base import DataError

log = logging.getLogger(__name__)


def md5_of(path) -> str:
    from torchvision.datasets.utils import calculate_md5

    return calculate_md5(path)


def verify_md5(path, expected: str, fix: str) -> None:
    """DataError naming `path`, the expected and the actual md5 unless they agree. Never deletes."""
    actual = md5_of(path)
    if actual != expected:
        raise DataError(f"{path} has md5 {actual}, expected {expected}: the file is incomplete (an "
                        f"interrupted download or copy?), damaged, or not the original. {fix}")


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """Every socket opened inside gets this connect/read timeout (download_url takes none)."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def download_file(folder, name: str, mirrors, md5: str, timeout: float = 10.0, stage_hint: str | None = None) -> Path:
    """Download file `name` into `folder` from the first of `mirrors` that delivers it; returns its path.

    mirrors: base URLs, tried in order; the file's URL is `<mirror>/<name>`.
    md5: the expected md5 hex digest of the file.
    A file already at `folder/name` with that md5 is kept (no request). One with a *different* md5 is
    never overwritten or deleted: DataError says so. Each attempt downloads (torchvision's
    download_url) into `<name>.part`, checks the md5, then renames onto `name`; a failed attempt
    (network error, HTTP error, wrong md5) removes the .part, so a bad download never appears under
    the final name, and the next mirror is tried. If every mirror fails, DataError at once, listing
    each URL's error and saying what to stage by hand: `stage_hint` (default: "copy <name> into
    <folder> on this machine and rerun").
    timeout: seconds per connect / read, so that a machine without internet fails within seconds.
    """
    from torchvision.datasets.utils import download_url

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if target.exists():
        actual = md5_of(target)
        if actual == md5:
            log.info("%s present, md5 ok", target)
            return target
        raise DataError(f"{target} exists but its md5 is {actual}, expected {md5}: it is not the "
                        f"original file. Delete it to download a fresh copy, or stage the original there.")
    part = target.with_name(target.name + ".part")
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        log.info("downloading %s", url)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)  # download_url would keep a stale .part as "already downloaded"
            with _socket_timeout(timeout):
                download_url(url, str(folder), filename=part.name)
            actual = md5_of(part)
            if actual != md5:
                raise DataError(f"md5 mismatch for {name}: expected {md5}, got {actual}")
            os.replace(part, target)
            _fsync_dir(folder)
            return target
        except (OSError, http.client.HTTPException, urllib.error.URLError, ValueError, RuntimeError,
                DataError) as e:
            errors.append(f"{url}: {e}")
            log.warning("download failed: %s: %s", url, e)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
    tried = "\n  ".join(errors) if errors else "(no mirrors given)"
    hint = stage_hint or f"copy {name} into {folder.resolve()} on this machine and rerun."
    raise DataError(f"could not download {name}; every mirror failed:\n  {tried}\n"
                    f"If this machine is offline, {hint}")


def probe(url: str, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """Whether `url` can be fetched from here, without fetching it: (its size in bytes, None) when
    the server answers (size None if it does not say), (None, why not) otherwise. A HEAD request,
    then a one-byte GET where HEAD is refused; `timeout` seconds per connection. (urllib, not
    torchvision: torchvision has no such check.)"""
    import urllib.request

    def size_of(response) -> int | None:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        value = total if total.isdigit() else response.headers.get("Content-Length")
        return int(value) if value and value.isdigit() else None

    errors = []
    for method, headers in (("HEAD", {}), ("GET", {"Range": "bytes=0-0"})):
        try:
            request = urllib.request.Request(url, method=method, headers={"User-Agent": "stabgap-doctor", **headers})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return size_of(response), None
        except urllib.error.HTTPError as e:
            errors.append(f"HTTP {e.code} {e.reason}")
            if e.code not in (403, 405, 501):
                break
        except (OSError, http.client.HTTPException, ValueError) as e:
            errors.append(f"{type(e).__name__}: {getattr(e, 'reason', e)}")
            break
    return None, "; ".join(errors)


def probe_mirrors(names, mirrors, timeout: float = 5.0) -> tuple[dict, list[str]]:
    """For each file name the first of `mirrors` that answers: ({name: (url, size)}, [errors of the
    names no mirror answered for, each naming the URLs tried])."""
    found, failed = {}, []
    for i, name in enumerate(names):
        if failed:  # no mirror answered for a file: the others would fare no better
            failed.append(f"{len(names) - i} more not tried")
            break
        tried = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            size, error = probe(url, timeout)
            if error is None:
                found[name] = (url, size)
                break
            tried.append(f"{url}: {error}")
        else:
            failed.append(f"{name} ({'; '.join(tried) or 'no mirrors'})")
    return found, failed


def mb(size: int | None) -> str:
    return "size not given" if size is None else f"{size / 1e6:,.0f} MB"


def check_gzip_stream(path, fix: str) -> None:
    """Read a gzip file to its end, so that its length and CRC trailer are checked; DataError if
    it is truncated or damaged. Needed where no md5 is checked: tarfile stops at the tar end
    marker and never reads the gzip trailer."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 22):
                pass
    except EOFError as e:
        raise DataError(f"{path} is truncated ({e}): an interrupted download or copy? {fix}") from e
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"{path} is not a valid gzip file ({type(e).__name__}: {e}): it is damaged. {fix}") from e


@contextlib.contextmanager
def extracted(archive, fix: str):
    """Extract `archive` (tar.gz, or a single .gz file) with torchvision's extract_archive into a
    temporary folder that is removed afterwards; yields that folder. Failures are DataErrors that
    name the archive and end with `fix`; the archive itself is never touched."""
    from torchvision.datasets.utils import extract_archive

    with tempfile.TemporaryDirectory(prefix="stabgap-extract-") as tmp:
        try:
            with _tar_data_filter():
                extract_archive(str(archive), tmp)
        except EOFError as e:
            raise DataError(f"{archive} is truncated ({e}): an interrupted download or copy? {fix}") from e
        except (tarfile.TarError, gzip.BadGzipFile, zlib.error, OSError) as e:
            raise DataError(f"{archive} could not be extracted ({type(e).__name__}: {e}): it is truncated "
                            f"or damaged. {fix}") from e
        yield Path(tmp)


@contextlib.contextmanager
def _tar_data_filter():
    """tarfile's "data" filter for extractions that pass none (refuses absolute paths, '..', links
    out of the folder, device files); the tarfile docs' recipe for code that cannot pass filter=."""
    before = tarfile.TarFile.extraction_filter
    tarfile.TarFile.extraction_filter = staticmethod(tarfile.data_filter)
    try:
        yield
    finally:
        tarfile.TarFile.extraction_filter = before
