"""``LocalObjectStore.put``: creates the request's folder when needed, replaces an object whole (a re-run
writes the same key) and leaves no temporary file behind, also when the write fails."""

from __future__ import annotations

import pytest

from darkroom.errors import StorageUnavailable
from storage.objects import LocalObjectStore, output_key

pytestmark = pytest.mark.timeout(30)


def test_put_creates_replaces_and_leaves_only_the_object(tmp_path):
    store = LocalObjectStore(tmp_path, "http://127.0.0.1:1")
    key = output_key("req-1", "0.png")
    store.put(key, b"first", "image/png")
    store.put(key, b"second run", "image/png")
    assert store.get(key) == b"second run"
    assert sorted(p.name for p in (tmp_path / "req-1").iterdir()) == ["0.png"]
    assert (tmp_path / "req-1" / "0.png").stat().st_mode & 0o077 == 0  # owner-only, as mkstemp made them


def test_a_failed_put_leaves_no_temporary_file(tmp_path):
    store = LocalObjectStore(tmp_path, "http://127.0.0.1:1")
    (tmp_path / "req-2" / "0.png").mkdir(parents=True)  # a folder where the object should go
    with pytest.raises(StorageUnavailable):
        store.put(output_key("req-2", "0.png"), b"data", "image/png")
    assert [p.name for p in (tmp_path / "req-2").iterdir()] == ["0.png"]
