"""JSONL reading: a row ends at "\n" only, whatever line separators its strings hold."""

import json

from rlsf_verl.io import atomic_write_jsonl, read_jsonl


def test_a_row_whose_text_holds_unicode_line_separators_reads_back_whole(tmp_path):
    # verl writes its validation and rollout dumps with ensure_ascii=False, so a model's output
    # can put U+2028, U+0085 or U+001C into a line raw; str.splitlines() would cut the row there.
    rows = [{"output": "a\u2028b\x85c\x1cd\re", "score": 1.0}, {"output": "", "score": 0.0}]
    path = tmp_path / "0.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    assert read_jsonl(path) == rows


def test_rows_written_atomically_read_back(tmp_path):
    rows = [{"a": 1}, {"b": [2, 3]}]
    assert read_jsonl(atomic_write_jsonl(tmp_path / "x.jsonl", rows)) == rows
