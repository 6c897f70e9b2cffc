"""Problems -> verl's RL parquet layout (what ``data.train_files`` / ``data.val_files`` read).

One row per problem, the columns verl's ``RLHFDataset`` and reward loop use:

- ``data_source``: the dataset's Hugging Face name (:data:`DATA_SOURCES`), e.g. "openai/gsm8k";
  verl's built-in scorer knows "openai/gsm8k" and "lighteval/MATH", and raises for the others
  rather than scoring them wrongly; our ``rlvr_math`` / ``rlvr_choice`` rewards ignore it;
- ``prompt``: ``[{"role": "user", "content": render_prompt(problem, template)}]``;
- ``ability``: the problem kind, "math" or "choice";
- ``reward_model``: ``{"style": "rule", "ground_truth": <normalised answer>}``;
- ``extra_info``: ``{"index", "split", "id", "question"}`` plus, for choice problems, ``"choices"``:
  the option letters ("ABCDE"), which ``rlvr_choice`` reads.

:func:`prepare_dataset` is ``rlsf-verl prepare``: read a local file in its original format, write
``<out>/<split>.parquet`` and record the settings in ``<out>/prepare.json``, each file atomically.

>>> import json, tempfile, pathlib
>>> from rlsf_verl.data.verl_parquet import prepare_dataset
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> _ = (tmp / "test.jsonl").write_text(json.dumps({"question": "2 + 2?", "answer": "#### 4"}) + "\\n")
>>> prepare_dataset("gsm8k", tmp / "test.jsonl", tmp / "out", splits=["test"])["splits"]["test"]["count"]
1
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from rlsf_verl.data.loaders import FORMATS, load_problems
from rlsf_verl.data.problem import LETTERS, Problem
from rlsf_verl.data.prompts import PROMPT_TEMPLATES, render_prompt
from rlsf_verl.errors import unknown_name_error
from rlsf_verl.io import atomic_write_file, atomic_write_json

DATA_SOURCES: dict[str, str] = {
    "gsm8k": "openai/gsm8k",
    "multiarith": "ChilleD/MultiArith",
    "svamp": "ChilleD/SVAMP",
    "commonsenseqa": "tau/commonsense_qa",
    "arc": "allenai/ai2_arc",
    "math": "lighteval/MATH",
    # not "aime...": verl's built-in scorer sends those to its DAPO scorer, which wants "Answer:" lines
    "aime": "AI-MO/aimo-validation-aime",
    "amc": "AI-MO/aimo-validation-amc",
}
PREPARE_RECORD = "prepare.json"


def verl_rows(
    problems: Sequence[Problem], split: str, template: str = "cot", data_source: str | None = None
) -> list[dict]:
    """verl RL rows for ``problems``; ``data_source`` defaults to ``DATA_SOURCES[problem.source]``
    (the problem's source itself when unlisted).

    >>> row = verl_rows([Problem(id="q", question="1 + 1?", answer="2", kind="math", source="gsm8k")], "test")[0]
    >>> row["data_source"], row["reward_model"], row["extra_info"]["index"]
    ('openai/gsm8k', {'style': 'rule', 'ground_truth': '2'}, 0)
    """
    _check_name("split", split)
    if data_source is not None:
        _check_name("data_source", data_source, file_name=False)
    rows = []
    for index, problem in enumerate(problems):
        extra = {"index": index, "split": split, "id": problem.id, "question": problem.question}
        if problem.kind == "choice":
            extra["choices"] = LETTERS[: len(problem.choices)]
        rows.append(
            {
                "data_source": data_source or DATA_SOURCES.get(problem.source, problem.source),
                "prompt": [{"role": "user", "content": render_prompt(problem, template)}],
                "ability": problem.kind,
                "reward_model": {"style": "rule", "ground_truth": problem.answer},
                "extra_info": extra,
            }
        )
    return rows


def write_verl_parquet(
    problems: Sequence[Problem],
    path: str | os.PathLike,
    split: str,
    template: str = "cot",
    data_source: str | None = None,
) -> Path:
    """Write :func:`verl_rows` to the parquet file ``path`` with ``datasets``, atomically."""
    if not problems:
        raise ValueError(f"no problems to write to {path}; check the input file and --limit")
    rows = verl_rows(problems, split, template, data_source)
    import datasets  # seconds to import: only when writing

    return atomic_write_file(path, lambda tmp: datasets.Dataset.from_list(rows).to_parquet(str(tmp)))


def prepare_dataset(
    dataset: str,
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: Sequence[str] = ("train",),
    template: str = "cot",
    limit: int | None = None,
    data_source: str | None = None,
) -> dict:
    """Convert ``input_path`` (a file holding one split, or a directory with a file per split) in
    format ``dataset`` into ``<out_dir>/<split>.parquet`` for each split; returns the record
    written to ``<out_dir>/prepare.json``.

    A directory already prepared keeps its other splits in the record; preparing it again with
    another dataset, template or data_source is refused, so one directory never mixes them.
    """
    splits = list(dict.fromkeys(splits))  # a repeated split is prepared once
    if not splits:
        raise ValueError("splits is empty; pass at least one split name such as 'train'")
    for split in splits:
        _check_name("split", split)
    source = Path(input_path).resolve()
    if source.is_file() and len(splits) > 1:
        raise ValueError(
            f"{source} is one file, so it holds one split, but splits={splits}; pass the "
            "directory holding a file per split, or one split name"
        )
    if dataset not in FORMATS:
        raise unknown_name_error("dataset", dataset, FORMATS)
    if template not in PROMPT_TEMPLATES:
        raise unknown_name_error("prompt template", template, PROMPT_TEMPLATES)
    out = Path(out_dir)
    record = _start_record(out, dataset, template, data_source)
    loaded = {}  # every split is read (and checked) before anything is written
    for split in splits:
        loaded[split] = load_problems(source, dataset, split=None if source.is_file() else split, limit=limit)
        if not loaded[split]:
            raise ValueError(f"{source} holds no {dataset} problems for split {split!r}; nothing to write")
    for split, problems in loaded.items():
        parquet = write_verl_parquet(problems, out / f"{split}.parquet", split, template, data_source)
        record["splits"][split] = {"input": str(source), "file": parquet.name, "count": len(problems), "limit": limit}
    atomic_write_json(out / PREPARE_RECORD, record)
    return record


def _start_record(out: Path, dataset: str, template: str, data_source: str | None) -> dict:
    """The settings of this run, with the splits an earlier run with the same settings wrote."""
    settings = {
        "dataset": dataset,
        "template": template,
        "data_source": data_source or DATA_SOURCES.get(dataset, dataset),
    }
    path = out / PREPARE_RECORD
    if not path.exists():
        return {**settings, "splits": {}}
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg}); delete it or pass another --out") from exc
    for key, value in settings.items():
        if earlier.get(key) != value:
            raise ValueError(
                f"{out} was prepared with {key}={earlier.get(key)!r}, not {value!r}; pass another "
                f"--out, or the same {key} to add splits to it"
            )
    return {**settings, "splits": dict(earlier.get("splits", {}))}


def _check_name(what: str, value: object, file_name: bool = True) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if file_name and (Path(value).name != value or value.startswith(".")):
        raise ValueError(f"{what}={value!r} names the output file <split>.parquet; use a plain name such as 'train'")
