"""Trained direction models, one file per (venue, symbol, timeframe, horizon), in the data directory.

``<data_dir>/models/direction/<venue>/<BTC-USDT>/<timeframe>/h<horizon>.json``: an envelope
holding the model's JSON (LightGBM's text format inside, ``direction.DirectionModel.to_json``),
its metadata (training window, rows, features, walk-forward scores, ``trained_at``) and an
HMAC-SHA256 of both keyed from the deployment's secret. Only files this platform wrote are
read: a file whose HMAC does not match (corrupt, edited, copied from another install, or
anything else dropped there) is refused before any of it reaches LightGBM's parser. Nothing is
ever unpickled. Files are written to a temporary file in the same folder and renamed, so a
reader sees the old model or the new one, never half of one.

The methods are synchronous (file I/O, parsing): call them from threads on the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradepilot.ai.direction import DirectionModel
from tradepilot.market.types import TIMEFRAMES

if TYPE_CHECKING:
    from tradepilot.config import Settings

logger = logging.getLogger("tradepilot.ai.registry")

FORMAT = "tradepilot.direction-model/1"
MAX_FILE_BYTES = 64 * 1024 * 1024  # a model of 4 boosters x 80 small trees is ~0.5 MB


class ModelRefused(Exception):
    """A model file that is not one this platform wrote intact (bad HMAC, bad JSON, wrong kind)."""


@dataclass(frozen=True)
class ModelKey:
    venue: str
    symbol: str
    timeframe: str
    horizon: int

    def relative_path(self) -> Path:
        return Path(self.venue) / self.symbol.replace("/", "-") / self.timeframe / f"h{self.horizon}.json"


def _signing_key(settings: Settings) -> bytes:
    return hashlib.sha256(b"tradepilot.ai.model-files\0" + settings.secret_key.get_secret_value().encode()).digest()


def _mac(key: bytes, model: str, meta: dict[str, Any]) -> str:
    body = json.dumps({"format": FORMAT, "model": model, "meta": meta}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


class DirectionRegistry:
    def __init__(self, root: Path, signing_key: bytes) -> None:
        self.root = root
        self._key = signing_key
        self._cache: dict[Path, tuple[tuple[int, int], DirectionModel]] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> DirectionRegistry:
        return cls(settings.data_dir / "models" / "direction", _signing_key(settings))

    @staticmethod
    def key(venue: str, symbol: str, timeframe: str, horizon: int) -> ModelKey:
        if timeframe not in TIMEFRAMES or not 1 <= horizon <= 1000:
            raise ValueError(f"no direction model for timeframe {timeframe!r} and horizon {horizon}")
        return ModelKey(venue, symbol.strip().upper().replace("-", "/"), timeframe, int(horizon))

    def path(self, key: ModelKey) -> Path:
        return self.root / key.relative_path()

    def save(self, key: ModelKey, model: DirectionModel) -> Path:
        """Write atomically (temporary file + rename in the same folder)."""
        text = model.to_json()
        meta = {**model.meta, "venue": key.venue, "symbol": key.symbol, "timeframe": key.timeframe,
                "horizon": key.horizon}
        envelope = {"format": FORMAT, "model": text, "meta": meta, "hmac": _mac(self._key, text, meta)}
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(envelope, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target

    def load(self, key: ModelKey) -> DirectionModel | None:
        """The model, or None when none was trained; ModelRefused for a file not ours or broken."""
        path = self.path(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        model = self._read(path, key, stat.st_size)
        with self._lock:
            self._cache[path] = (stamp, model)
        return model

    def _read(self, path: Path, key: ModelKey, size: int) -> DirectionModel:
        if size > MAX_FILE_BYTES:
            raise ModelRefused(f"{path}: {size} bytes, more than a direction model can be")
        try:
            envelope = json.loads(path.read_bytes())
            text, meta, mac = envelope["model"], envelope["meta"], envelope["hmac"]
            if envelope.get("format") != FORMAT or not isinstance(text, str) or not isinstance(meta, dict):
                raise ValueError("not a direction-model envelope")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ModelRefused(f"{path}: not a model file this platform wrote ({exc})") from None
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(self._key, text, meta)):
            raise ModelRefused(f"{path}: its HMAC does not match (corrupt, edited or written by another install)")
        if (meta.get("symbol"), meta.get("timeframe"), meta.get("horizon")) != (key.symbol, key.timeframe,
                                                                                 key.horizon):
            raise ModelRefused(f"{path}: the file is for another symbol, timeframe or horizon")
        try:
            model = DirectionModel.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelRefused(f"{path}: {exc}") from None
        model.meta = meta
        return model

    def exists(self, key: ModelKey) -> bool:
        return self.path(key).is_file()

    def trained(self) -> list[dict[str, Any]]:
        """The metadata of every model file that reads back as ours (refused ones are logged)."""
        found = []
        for path in sorted(self.root.glob("*/*/*/h*.json")):
            venue, symbol, timeframe = path.parts[-4:-1]
            try:
                key = self.key(venue, symbol.replace("-", "/"), timeframe, int(path.stem[1:]))
                model = self.load(key)
            except (ValueError, ModelRefused) as exc:
                logger.warning("direction model file refused", extra={"path": str(path), "reason": str(exc)})
                continue
            if model is not None:
                found.append(model.meta)
        return found


def direction_registry(runtime: Any) -> DirectionRegistry:
    """The process's registry (one, so its cache of parsed models is shared)."""
    registry = runtime.services.get("ai_direction_registry")
    if registry is None:
        registry = runtime.services["ai_direction_registry"] = DirectionRegistry.for_settings(runtime.settings)
    return registry  # type: ignore[no-any-return]
