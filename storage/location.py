"""Where the store lives: the one place that joins paths and touches files.

A store root is a local folder (``/data/convoice``) or a URI that both
deltalake and :mod:`pyarrow.fs` understand (``s3://bucket/prefix``,
``file:///data/convoice``). Everything else in :mod:`convoice.storage` names
files by *keys*: ``/``-separated paths relative to the root
(``audio/clips/rec_1/clip_2.flac``), never by absolute paths.

Local roots get atomic writes (temp file, then rename). Object stores write an
object in one PUT, which is atomic by itself.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pyarrow.fs as pafs

    from convoice.config import StoreSettings

CHUNK = 1 << 20
_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# deltalake (object_store) option names, lower case and without "aws_", and the
# S3FileSystem argument each one becomes.
_S3_KEYS = {
    "access_key_id": "access_key",
    "secret_access_key": "secret_key",
    "session_token": "session_token",
    "token": "session_token",
    "region": "region",
    "default_region": "region",
    "endpoint_url": "endpoint",
    "endpoint": "endpoint",
    "allow_http": "allow_http",
}


def clean_key(key: str) -> str:
    """``key`` normalised, or ValueError when it could escape the root."""
    parts = key.replace("\\", "/").split("/")
    if key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid store key {key!r}: use a relative path like 'audio/x.flac'")
    return "/".join(parts)


def is_local_root(root: str) -> bool:
    """Whether ``root`` is a plain local path (not a URI)."""
    return "://" not in root


def storage_options(
    root: str, settings: StoreSettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """deltalake ``storage_options`` for ``root`` from the settings and the AWS environment.

    Empty for local roots, and for S3 roots when no setting is made: then
    deltalake and pyarrow each use the AWS defaults (environment, profile, the
    bucket's own region). Credentials come from the standard variables
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``).
    """
    if is_local_root(root) or not root.startswith("s3://"):
        return {}
    if not (settings.endpoint_url or settings.region or settings.allow_http):
        return {}
    env = os.environ if environ is None else environ
    options = {name: env[name] for name in _AWS_ENV if env.get(name)}
    if settings.endpoint_url:
        options["AWS_ENDPOINT_URL"] = settings.endpoint_url
    if settings.region:
        options["AWS_REGION"] = settings.region
    if settings.allow_http:
        options["AWS_ALLOW_HTTP"] = "true"
    return options


def s3_filesystem(storage_options: Mapping[str, str]) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem configured like deltalake from the same ``storage_options``.

    Understands the object_store names deltalake takes (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
    ``AWS_REGION``, ``AWS_ALLOW_HTTP``; any case, ``aws_`` optional); others are ignored.
    """
    import pyarrow.fs as pafs

    found: dict[str, str] = {}
    for name, value in storage_options.items():
        key = name.lower().removeprefix("aws_")
        if key in _S3_KEYS and value:
            found[_S3_KEYS[key]] = value
    kwargs: dict[str, str] = {}
    if "access_key" in found and "secret_key" in found:
        kwargs["access_key"] = found["access_key"]
        kwargs["secret_key"] = found["secret_key"]
        if "session_token" in found:
            kwargs["session_token"] = found["session_token"]
    if "region" in found:
        kwargs["region"] = found["region"]
    endpoint = found.get("endpoint", "")
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        if scheme == "http" and found.get("allow_http", "").lower() not in ("1", "true", "yes"):
            raise ValueError(
                f"the store endpoint {endpoint} is plain http: set AWS_ALLOW_HTTP=true"
                " (store.allow_http = true) to allow it"
            )
        kwargs["endpoint_override"] = host.rstrip("/")
        kwargs["scheme"] = scheme or "https"
    return pafs.S3FileSystem(**kwargs)


def arrow_filesystem(
    root: str, storage_options: Mapping[str, str] | None = None
) -> tuple[pafs.FileSystem, str] | None:
    """A native pyarrow filesystem for the remote ``root`` and the path of the root in it.

    ``storage_options`` are honoured for ``s3://`` roots; for other schemes
    with options there is no native equivalent and this returns None.
    """
    import pyarrow.fs as pafs

    if storage_options:
        if not root.startswith("s3://"):
            return None
        return s3_filesystem(storage_options), root.removeprefix("s3://").rstrip("/")
    filesystem, path = pafs.FileSystem.from_uri(root)
    return filesystem, path.rstrip("/")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a local file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class Location:
    """A store root, local or remote, and file operations relative to it."""

    def __init__(self, root: str, storage_options: dict[str, str] | None = None) -> None:
        if not root:
            raise ValueError("the store root is empty")
        self.storage_options = dict(storage_options or {})
        self.is_local = is_local_root(root)
        self.root = str(Path(root).expanduser().resolve()) if self.is_local else root.rstrip("/")
        self._fs: pafs.FileSystem | None = None
        self._base = ""

    def __repr__(self) -> str:
        return f"Location({self.root!r})"

    def uri(self, key: str = "") -> str:
        """The full path (local) or URI (remote) of ``key``; the root when empty."""
        if not key:
            return self.root
        key = clean_key(key)
        return str(Path(self.root, *key.split("/"))) if self.is_local else f"{self.root}/{key}"

    def path(self, key: str = "") -> Path:
        """The local path of ``key``; ValueError for a remote store."""
        if not self.is_local:
            raise ValueError(f"{self.root} is not a local store; read it with read_bytes()")
        return Path(self.uri(key))

    def _remote(self, key: str) -> tuple[pafs.FileSystem, str]:
        if self._fs is None:
            import pyarrow.fs as pafs

            found = arrow_filesystem(self.root, self.storage_options)
            if found is None:  # not S3: pyarrow's defaults (the tables still get the options)
                filesystem, path = pafs.FileSystem.from_uri(self.root)
                found = filesystem, path.rstrip("/")
            self._fs, self._base = found
        return self._fs, f"{self._base}/{clean_key(key)}" if key else self._base

    def exists(self, key: str) -> bool:
        if self.is_local:
            return self.path(key).exists()
        import pyarrow.fs as pafs

        fs, path = self._remote(key)
        return bool(fs.get_file_info(path).type != pafs.FileType.NotFound)

    def size(self, key: str) -> int | None:
        """The size in bytes of the file ``key``, None when there is none."""
        if self.is_local:
            path = self.path(key)
            return path.stat().st_size if path.is_file() else None
        import pyarrow.fs as pafs

        fs, path_ = self._remote(key)
        info = fs.get_file_info(path_)
        return int(info.size) if info.type == pafs.FileType.File else None

    def read_bytes(self, key: str) -> bytes:
        if self.is_local:
            return self.path(key).read_bytes()
        fs, path = self._remote(key)
        with fs.open_input_stream(path) as stream:
            return bytes(stream.read())

    def open_read(self, key: str) -> BinaryIO:
        """A binary stream of ``key``; close it (use ``with``)."""
        if self.is_local:
            return self.path(key).open("rb")
        fs, path = self._remote(key)
        stream: BinaryIO = fs.open_input_stream(path)
        return stream

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``key`` whole or not at all (readers never see half a file)."""
        if self.is_local:
            atomic_write(self.path(key), data)
            return
        fs, path = self._remote(key)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(data)

    def put_file(self, source: Path, key: str) -> None:
        """Move the local file ``source`` to ``key`` (``source`` is consumed)."""
        if self.is_local:
            import shutil

            target = self.path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
            return
        fs, path = self._remote(key)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with source.open("rb") as handle, fs.open_output_stream(path) as stream:
            for block in iter(lambda: handle.read(CHUNK), b""):
                stream.write(block)
        source.unlink()

    def download(self, key: str, dest: Path, sha256: str | None = None) -> str:
        """Copy ``key`` to the local file ``dest`` atomically; returns its sha256.

        With ``sha256``, a copy whose digest differs raises ValueError and
        leaves ``dest`` as it was.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, self.open_read(key) as stream:
                for block in iter(lambda: stream.read(CHUNK), b""):
                    digest.update(block)
                    out.write(block)
            if sha256 is not None and digest.hexdigest() != sha256:
                raise ValueError(
                    f"{self.uri(key)} has sha256 {digest.hexdigest()}, expected {sha256}"
                )
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def list_dirs(self, key: str) -> list[str]:
        """Names of the folders directly under ``key`` (empty when it does not exist)."""
        if self.is_local:
            folder = self.path(key)
            return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        import pyarrow.fs as pafs

        fs, path = self._remote(key)
        selector = pafs.FileSelector(path, allow_not_found=True)
        infos = fs.get_file_info(selector)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def delete_dir(self, key: str) -> None:
        """Remove the folder ``key`` and its content (no error when it does not exist)."""
        if self.is_local:
            import shutil

            shutil.rmtree(self.path(key), ignore_errors=True)
            return
        fs, path = self._remote(key)
        if self.exists(key):
            fs.delete_dir(path)

    def staging_key(self, final_key: str) -> str:
        """Where to build a folder that :meth:`publish` then moves to ``final_key``.

        Locally a hidden sibling folder (renamed in one step); on object stores,
        which cannot rename folders, the final folder itself: there a marker
        file written last (a release's manifest) says it is complete.
        """
        if not self.is_local:
            return clean_key(final_key)
        parent, _, name = clean_key(final_key).rpartition("/")
        staged = f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        return f"{parent}/{staged}" if parent else staged

    def publish(self, staging_key: str, final_key: str) -> None:
        """Move a staged folder into place; FileExistsError when ``final_key`` exists."""
        if staging_key == final_key:
            return
        final = self.path(final_key)
        if final.exists():
            raise FileExistsError(f"{final} exists already")
        os.rename(self.path(staging_key), final)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
