"""The direction models' registry (signed JSON files, written atomically) and
``tradepilot ai train direction`` on real candles (Coinbase BTC-USD 1h, 3,000 bars)."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tradepilot.ai.direction_registry import DirectionRegistry, ModelRefused
from tradepilot.ai.direction_training import InsufficientHistory, Target, train_direction
from tradepilot.cli import main
from tradepilot.config import Settings
from tradepilot.market.importer import import_file
from tradepilot.market.store import CandleStore

DATA = Path(__file__).resolve().parents[1] / "data" / "market" / "coinbase_btc_usd_1h"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class _Trap:
    """Unpickling this would create ``path``: proof that nothing is ever unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.path,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[CandleStore, DirectionRegistry, dict]:
    root = tmp_path_factory.mktemp("registry")
    store = CandleStore(root / "candles", "sim")
    import_file(store, DATA / "BTC_USD-1h-first3000.csv", symbol="BTC/USDT", timeframe="1h", derive=False)
    registry = DirectionRegistry(root / "models", b"k" * 32)
    return store, registry, train_direction(store, registry, Target("BTC/USDT", "1h", 1), NOW)


def test_a_trained_model_is_saved_with_its_metadata_and_reads_back(trained) -> None:  # type: ignore[no-untyped-def]
    _, registry, meta = trained
    key = registry.key("sim", "btc-usdt", "1h", 1)
    path = registry.path(key)
    assert path == registry.root / "sim" / "BTC-USDT" / "1h" / "h1.json"
    assert [p.name for p in path.parent.iterdir()] == ["h1.json"]  # no temporary file left behind
    assert meta["window"] == {"first_bar": "2017-07-01T11:00:00Z", "last_bar": "2017-11-03T10:00:00Z"}
    assert meta["bars"] == 3000 and meta["trained_at"] == "2026-01-01T00:00:00Z" and len(meta["features"]) == 16
    assert set(meta["scores"]) >= {"model", "linear", "always_up", "last_direction", "beats_baselines", "test_bars"}
    model = registry.load(key)
    assert model is not None and model.meta["scores"] == meta["scores"] and model.horizon == 1
    assert registry.load(registry.key("sim", "ETH/USDT", "1h", 1)) is None
    assert [m["symbol"] for m in registry.trained()] == ["BTC/USDT"]


def test_only_files_the_platform_wrote_are_read(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, registry, _ = trained
    key = registry.key("sim", "BTC/USDT", "1h", 1)
    good = registry.path(key).read_bytes()
    model = registry.load(key)
    reader = DirectionRegistry(tmp_path / "copy", b"k" * 32)
    target = reader.path(key)
    target.parent.mkdir(parents=True)

    envelope = json.loads(good)
    envelope["meta"]["scores"]["model"]["auc"] = 0.99  # flattering scores, edited in
    trap = tmp_path / "unpickled"
    other = DirectionRegistry(tmp_path / "other", b"another key".ljust(32, b"."))
    for foreign in (json.dumps(envelope).encode(), good[: len(good) // 2], pickle.dumps(_Trap(trap)),
                    other.save(key, model).read_bytes(), b"\x00" * 100):
        target.write_bytes(foreign)
        with pytest.raises(ModelRefused):
            reader.load(key)
    assert not trap.exists()
    target.write_bytes(good)  # the same bytes under another name (ETH) are refused too: the key is signed
    assert reader.load(key) is not None
    eth = reader.path(reader.key("sim", "ETH/USDT", "1h", 1))
    eth.parent.mkdir(parents=True)
    eth.write_bytes(good)
    with pytest.raises(ModelRefused):
        reader.load(reader.key("sim", "ETH/USDT", "1h", 1))


def test_too_little_history_is_refused(tmp_path: Path) -> None:
    store = CandleStore(tmp_path / "candles", "sim")
    import_file(store, DATA / "BTC_USD-1h-first720.csv", symbol="BTC/USDT", timeframe="1h", derive=False)
    registry = DirectionRegistry(tmp_path / "models", b"k" * 32)
    with pytest.raises(InsufficientHistory):
        train_direction(store, registry, Target("BTC/USDT", "1h", 1), datetime(2017, 7, 10, tzinfo=UTC))
    assert not registry.exists(registry.key("sim", "BTC/USDT", "1h", 1))


def test_cli_trains_a_direction_model_into_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    monkeypatch.setenv("TRADEPILOT_DATA_DIR", str(tmp_path / "var"))
    assert main(["data", "import", str(DATA / "BTC_USD-1h-first3000.csv"), "--symbol", "BTC/USDT",
                 "--timeframe", "1h", "--no-derive"]) == 0
    capsys.readouterr()
    assert main(["ai", "train", "direction", "--symbol", "BTC/USDT", "--timeframe", "1h", "--horizon", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bars"] == 3000 and out["scores"]["test_bars"] > 1000
    registry = DirectionRegistry.for_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    path = Path(out["model"])
    assert path.is_file() and path.is_relative_to(tmp_path / "var" / "models" / "direction")
    assert registry.trained()[0]["window"] == out["window"]

    assert main(["ai", "train", "direction", "--symbol", "ETH/USDT", "--timeframe", "1h"]) == 1  # nothing stored
    assert "closed bars stored" in capsys.readouterr().err
