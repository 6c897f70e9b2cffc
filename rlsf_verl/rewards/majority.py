"""Majority-vote pseudo-labels (TTRL): the answer most samples of a prompt agree on stands in for
the missing reference, and each sample is rewarded for agreeing with it.

Pure functions over extracted answers, so the trainer step can apply them to a whole group of
samples (grouped by verl's ``uid``); a per-sample reward function cannot see the group.

Rules:

- answers vote by equivalence under :func:`rlsf_verl.answers.answers_equal`, so "1/2", "0.5" and
  ``\\frac{1}{2}`` are one vote; an answer joins the first class (in order of appearance) whose
  first answer it equals;
- None (no answer found) never votes and never wins; a group with no answer has no label;
- ties go to the class whose first answer comes earliest in the group;
- the label is spelled as that class's first answer.

>>> vote = majority_vote(["1/2", "3", "0.5", None])
>>> vote.label, vote.votes, vote.agreement, vote.agrees
('1/2', 2, 0.5, (True, False, True, False))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from rlsf_verl.answers import answers_equal, extract_answer
from rlsf_verl.answers.extract import check_kind
from rlsf_verl.rewards import get_reward_function, register_reward_function


@dataclass(frozen=True)
class MajorityVote:
    """The vote of one group: its ``label`` (None when no sample answered), how many ``votes`` the
    label got out of ``size`` samples, and whether each sample, in order, ``agrees`` with it."""

    label: str | None
    votes: int
    size: int
    agrees: tuple[bool, ...]

    @property
    def agreement(self) -> float:
        """Share of the group's samples that agree with the label (0.0 without a label)."""
        return self.votes / self.size if self.size else 0.0


def answer_for_vote(solution_str: str, kind: str = "math", choices: str = "ABCDE") -> str | None:
    r"""The final answer a response votes for, as ``rlvr_math`` / ``rlvr_choice`` would grade it, or None.

    >>> answer_for_vote(r"So $x = \boxed{\frac{1}{2}}$."), answer_for_vote("no idea")
    ('\\frac{1}{2}', None)
    """
    answer = extract_answer(solution_str, kind=kind, choices=choices)
    return None if answer is None else answer.value


def _check_answer(index: int, answer: object, kind: str) -> None:
    if not isinstance(answer, str):
        raise TypeError(f"answers[{index}]={answer!r} must be a str or None (use answer_for_vote to extract it)")
    try:
        answers_equal(answer, answer, kind=kind)
    except ValueError as error:
        raise ValueError(f"answers[{index}]={answer!r} cannot vote as a {kind} answer: {error}") from error


def majority_vote(answers: Sequence[str | None], kind: str = "math") -> MajorityVote:
    """The majority answer of one group of samples, by the rules in the module docstring.

    >>> majority_vote(["B", "c", "b", "C"], kind="choice").label
    'B'
    >>> majority_vote([None, None]).label is None
    True
    """
    check_kind(kind)
    representatives: list[str] = []  # first answer of each class, in order of appearance
    classes: list[int | None] = []  # class of each answer, None for no answer
    for index, answer in enumerate(answers):
        if answer is None:
            classes.append(None)
            continue
        _check_answer(index, answer, kind)
        found = next((c for c, rep in enumerate(representatives) if answers_equal(answer, rep, kind=kind)), None)
        if found is None:
            representatives.append(answer)
            found = len(representatives) - 1
        classes.append(found)
    counts = Counter(c for c in classes if c is not None)
    if not counts:
        return MajorityVote(label=None, votes=0, size=len(classes), agrees=(False,) * len(classes))
    # Classes are numbered by first appearance, so the lowest number breaks a tie.
    winner = min(counts, key=lambda c: (-counts[c], c))
    return MajorityVote(
        label=representatives[winner],
        votes=counts[winner],
        size=len(classes),
        agrees=tuple(c == winner for c in classes),
    )


def group_majority_votes(
    answers: Sequence[str | None], uids: Sequence[Hashable], kind: str = "math"
) -> dict[Hashable, MajorityVote]:
    """One :class:`MajorityVote` per ``uid`` (samples of one prompt share it; a batch may interleave
    them), in order of first appearance; each vote's ``agrees`` follows its samples' batch order.

    >>> votes = group_majority_votes(["1", "2", "1", "2"], ["p", "q", "p", "q"])
    >>> {uid: vote.label for uid, vote in votes.items()}
    {'p': '1', 'q': '2'}
    """
    if len(answers) != len(uids):
        raise ValueError(f"answers ({len(answers)}) and uids ({len(uids)}) must have one entry per sample")
    groups: dict[Hashable, list[str | None]] = {}
    for answer, uid in zip(answers, uids, strict=True):
        groups.setdefault(uid, []).append(answer)
    return {uid: majority_vote(group, kind=kind) for uid, group in groups.items()}


def majority_vote_scores(answers: Sequence[str | None], uids: Sequence[Hashable], kind: str = "math") -> list[float]:
    """Per sample: 1.0 if its answer agrees with its group's majority label, else 0.0 (no answer: 0.0).

    >>> majority_vote_scores(["1", "2", "1", None], ["p", "p", "p", "p"])
    [1.0, 0.0, 1.0, 0.0]
    """
    votes = group_majority_votes(answers, uids, kind=kind)
    seen: Counter[Hashable] = Counter()
    scores = []
    for uid in uids:
        scores.append(float(votes[uid].agrees[seen[uid]]))
        seen[uid] += 1
    return scores


def majority_vote_metrics(votes: Iterable[MajorityVote]) -> dict[str, float]:
    """Batch metrics of the groups' votes: ``majority/agreement``, the mean over groups of the share
    of samples agreeing with their label, and ``majority/labelled``, the share of groups with a label.

    >>> majority_vote_metrics(group_majority_votes(["1", "1", "2", None], ["p", "p", "q", "q"]).values())
    {'majority/agreement': 0.75, 'majority/labelled': 1.0}
    """
    votes = list(votes)
    if not votes:
        raise ValueError("votes is empty; pass the group_majority_votes(...) of a non-empty batch")
    return {
        "majority/agreement": sum(vote.agreement for vote in votes) / len(votes),
        "majority/labelled": sum(vote.label is not None for vote in votes) / len(votes),
    }


@register_reward_function("majority_vote")
def majority_vote_reward(
    solution_str: str,
    ground_truth: object = None,
    data_source: str | None = None,
    extra_info: dict | None = None,
    kind: str = "math",
    **kwargs: object,
) -> dict[str, object]:
    """The per-sample half of the majority vote: the response's answer as ``pred`` and, where the
    row has a reference, the verifiable score against it.

    verl reads ``pred`` in validation and reports maj@N; in training the trainer's group step
    (``rlsf.group.majority_vote=true``, set by ``rlsf_reward=majority_vote``) replaces ``score`` by
    agreement with the group's majority, so no reference is needed there.

    >>> majority_vote_reward(solution_str="so the answer is 7", ground_truth="7")
    {'score': 1.0, 'acc': 1.0, 'pred': '7'}
    """
    check_kind(kind)
    choices = (extra_info or {}).get("choices", "ABCDE")
    pred = answer_for_vote(solution_str, kind=kind, choices=choices) if isinstance(solution_str, str) else None
    score = 0.0
    if ground_truth not in (None, ""):
        verifiable = get_reward_function("rlvr_math" if kind == "math" else "rlvr_choice")
        score = float(verifiable(solution_str=solution_str, ground_truth=ground_truth, extra_info=extra_info)["score"])
    return {"score": score, "acc": score, "pred": pred or ""}
