"""Encrypted archives written and read in chunks, so a large database never sits in memory.

A Fernet token authenticates one message, and a whole database is too big for one. The
archive is therefore a sequence of frames::

    b"TPBACKUP\\x01\\n"                       magic and format version
    4-byte big-endian length | Fernet token   one frame, repeated

Each token's plaintext is ``8-byte frame index | 1-byte last flag | up to 1 MiB of data``.
Fernet's HMAC detects any change inside a frame; the index detects frames reordered,
dropped or duplicated; the last flag detects a truncated file. The decrypted stream is a
tar archive (``archive.py``). Frame 0 is empty: it only tells a wrong key (frame 0 does not
decrypt) from a damaged archive (a later frame does not).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from cryptography.fernet import InvalidToken, MultiFernet

from tradepilot.ops.backup.errors import BackupCorrupted, BackupUndecryptable

MAGIC = b"TPBACKUP\x01\n"
CHUNK_SIZE = 1 << 20
MAX_TOKEN_SIZE = 2 * CHUNK_SIZE  # base64 of a chunk plus Fernet's overhead stays well below
_LENGTH = struct.Struct(">I")
_HEADER = struct.Struct(">QB")


class EncryptingWriter:
    """A write-only file object: what is written is encrypted into frames on ``target``."""

    def __init__(self, target: BinaryIO, cipher: MultiFernet) -> None:
        self._target = target
        self._cipher = cipher
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        target.write(MAGIC)
        self._emit(b"", last=False)  # the key check: a wrong key fails here, damage fails later

    def write(self, data: bytes) -> int:
        self._buffer.extend(data)
        while len(self._buffer) > CHUNK_SIZE:
            self._emit(bytes(self._buffer[:CHUNK_SIZE]), last=False)
            del self._buffer[:CHUNK_SIZE]
        return len(data)

    def close(self) -> None:
        """Write the final frame (possibly empty); without it the archive reads as truncated."""
        if not self._closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def _emit(self, chunk: bytes, *, last: bool) -> None:
        token = self._cipher.encrypt(_HEADER.pack(self._index, 1 if last else 0) + chunk)
        self._target.write(_LENGTH.pack(len(token)) + token)
        self._index += 1


class DecryptingReader:
    """A read-only file object over an encrypted archive; raises on any corruption."""

    def __init__(self, source: BinaryIO, cipher: MultiFernet) -> None:
        self._source = source
        self._cipher = cipher
        self._buffer = b""
        self._index = 0
        self._finished = False
        if source.read(len(MAGIC)) != MAGIC:
            raise BackupCorrupted("This file is not a TradePilot backup (bad header).")

    @property
    def finished(self) -> bool:
        """The final frame was read: the archive is complete."""
        return self._finished

    def read(self, size: int = -1) -> bytes:
        while not self._finished and (size < 0 or len(self._buffer) < size):
            self._buffer += self._next_frame()
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def drain(self) -> None:
        """Read to the end, so truncation or tampering after the last member is detected too."""
        while not self._finished:
            self._next_frame()

    def _next_frame(self) -> bytes:
        raw_length = self._source.read(_LENGTH.size)
        if len(raw_length) < _LENGTH.size:
            raise BackupCorrupted("The backup is truncated (it ends before its last block).")
        (length,) = _LENGTH.unpack(raw_length)
        if length > MAX_TOKEN_SIZE:
            raise BackupCorrupted("The backup is corrupted (a block has an impossible length).")
        token = self._source.read(length)
        if len(token) < length:
            raise BackupCorrupted("The backup is truncated (its last block is incomplete).")
        try:
            plain = self._cipher.decrypt(token)
        except InvalidToken:
            if self._index == 0:
                raise BackupUndecryptable("No configured backup key (TRADEPILOT_BACKUP_KEYS) decrypts this "
                                          "backup, or its first block is corrupted.") from None
            raise BackupCorrupted(f"The backup is corrupted (block {self._index} fails its authentication "
                                  "check).") from None
        index, last = _HEADER.unpack_from(plain)
        if index != self._index:
            raise BackupCorrupted(f"The backup is corrupted (block {self._index} is out of order).")
        self._index += 1
        self._finished = bool(last)
        return plain[_HEADER.size:]
