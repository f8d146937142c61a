"""The staged CSV reader finds an overlong line the way the bundle reader does, a block at a time."""
import random

from data import bundle, parts


def test_the_first_overlong_line_is_found_across_block_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "MAX_LINE_BYTES", 50)
    monkeypatch.setattr(parts, "MAX_LINE_BYTES", 50)
    rng = random.Random(1)
    path = tmp_path / "t.csv"
    for _ in range(1500):
        lines = [b"x" * rng.choice([0, 10, 49, 50, 51, 80]) for _ in range(rng.randint(1, 8))]
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        path.write_bytes(data)
        expected = bundle._longest_line(data) if len(data) > 50 else None
        assert parts._first_long_line(path, block=rng.choice([7, 13, 64, 1000])) == expected, lines
