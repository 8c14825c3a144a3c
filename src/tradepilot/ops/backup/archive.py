"""The archive file: a tar stream (manifest, configuration, database) inside the encrypted
frames of ``crypto_stream``. Written and read as streams; the database member is copied
through in chunks and checked against the manifest's SHA-256 on the way out.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import BinaryIO

from cryptography.fernet import MultiFernet

from tradepilot.ops.backup.crypto_stream import DecryptingReader, EncryptingWriter
from tradepilot.ops.backup.errors import BackupCorrupted
from tradepilot.ops.backup.manifest import CONFIG_MEMBER, MANIFEST_MEMBER, Manifest, MemberInfo

COPY_CHUNK = 1 << 20


def file_info(path: Path) -> MemberInfo:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    return MemberInfo(size=path.stat().st_size, sha256=digest.hexdigest())


def bytes_info(data: bytes) -> MemberInfo:
    return MemberInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest())


def write_archive(target: Path, cipher: MultiFernet, *, manifest: Manifest, config: bytes,
                  database_file: Path) -> None:
    """Write the archive to ``target`` atomically (a temporary name, fsync, rename)."""
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as raw:
        writer = EncryptingWriter(raw, cipher)
        with tarfile.open(fileobj=writer, mode="w|") as tar:  # type: ignore[call-overload]
            _add_bytes(tar, MANIFEST_MEMBER, manifest.to_json())
            _add_bytes(tar, CONFIG_MEMBER, config)
            info = tarfile.TarInfo(manifest.database_member)
            info.size = database_file.stat().st_size
            info.mode = 0o600
            with database_file.open("rb") as handle:
                tar.addfile(info, handle)
        writer.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.chmod(partial, 0o600)
    partial.replace(target)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def read_manifest(path: Path, cipher: MultiFernet) -> Manifest:
    """Decrypt only as far as the manifest (the first member)."""
    with path.open("rb") as raw:
        reader = DecryptingReader(raw, cipher)
        with _open_tar(reader) as tar:
            member = _next_member(tar)
            if member is None or member.name != MANIFEST_MEMBER:
                raise BackupCorrupted("The backup does not start with its manifest.")
            return Manifest.from_json(_read_member(tar, member))


def extract(path: Path, cipher: MultiFernet, *, database_target: Path) -> tuple[Manifest, bytes]:
    """Decrypt everything: the manifest and configuration in memory, the database to
    ``database_target`` (mode 0600). Every member's size and SHA-256 must match the manifest,
    and the archive must be complete."""
    with path.open("rb") as raw:
        reader = DecryptingReader(raw, cipher)
        with _open_tar(reader) as tar:
            first = _next_member(tar)
            if first is None or first.name != MANIFEST_MEMBER:
                raise BackupCorrupted("The backup does not start with its manifest.")
            manifest = Manifest.from_json(_read_member(tar, first))
            config: bytes | None = None
            database_seen = False
            while (member := _next_member(tar)) is not None:
                expected = manifest.members.get(member.name)
                if expected is None:
                    raise BackupCorrupted(f"The backup holds an unexpected member {member.name!r}.")
                if member.name == CONFIG_MEMBER:
                    config = _read_member(tar, member)
                    actual = bytes_info(config)
                elif member.name == manifest.database_member:
                    actual = _copy_member(tar, member, database_target)
                    database_seen = True
                else:
                    raise BackupCorrupted(f"The backup holds an unexpected member {member.name!r}.")
                if actual != expected:
                    raise BackupCorrupted(f"{member.name} does not match its checksum in the manifest.")
        reader.drain()
    if config is None or not database_seen:
        raise BackupCorrupted("The backup is missing members its manifest lists.")
    return manifest, config


def _open_tar(reader: BinaryIO | DecryptingReader) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=reader, mode="r|")  # type: ignore[call-overload,no-any-return]
    except tarfile.TarError:
        raise BackupCorrupted("The backup's content is not readable.") from None


def _next_member(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    try:
        member = tar.next()
    except tarfile.TarError:
        raise BackupCorrupted("The backup's content is not readable.") from None
    if member is not None and not member.isfile():
        raise BackupCorrupted(f"The backup holds a non-file member {member.name!r}.")
    return member


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise BackupCorrupted(f"{member.name} is not readable.")
    try:
        return handle.read()
    except tarfile.TarError:
        raise BackupCorrupted(f"{member.name} is truncated.") from None


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> MemberInfo:
    handle = tar.extractfile(member)
    if handle is None:
        raise BackupCorrupted(f"{member.name} is not readable.")
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        try:
            while chunk := handle.read(COPY_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        except tarfile.TarError:
            raise BackupCorrupted(f"{member.name} is truncated.") from None
    return MemberInfo(size=size, sha256=digest.hexdigest())
