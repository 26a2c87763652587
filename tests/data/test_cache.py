"""The per-source cache under concurrency: sibling runs (a sweep's jobs) may build the same entry at once."""

from __future__ import annotations

from med42_train.data.cache import STATS, SourceCache


def _cache(tmp_path) -> SourceCache:
    return SourceCache(root=tmp_path, kind="sft", name="medqa", key="abc123")


def test_an_entry_completed_by_another_process_meanwhile_is_kept(tmp_path):
    cache = _cache(tmp_path)
    with cache.building() as scratch:
        (scratch / STATS).write_text('{"by": "this process"}')
        # Another job finishes the same key while this one is still writing (non-empty: a plain rename would fail).
        cache.dir.mkdir(parents=True)
        (cache.dir / STATS).write_text('{"by": "the other process"}')
    assert cache.stats() == {"by": "the other process"}
    assert [p.name for p in cache.dir.parent.iterdir()] == [cache.dir.name]  # no scratch left behind


def test_a_half_folder_from_a_crashed_build_is_replaced(tmp_path):
    cache = _cache(tmp_path)
    cache.dir.mkdir(parents=True)
    (cache.dir / "rows.arrow").write_bytes(b"half written")  # no STATS: never completed
    with cache.building() as scratch:
        (scratch / STATS).write_text('{"by": "this process"}')
    assert cache.stats() == {"by": "this process"} and not (cache.dir / "rows.arrow").exists()
