"""Hand-written multiple-choice items (commonsense and simple facts), in the spirit of
CommonsenseQA and ARC-Easy, for runs and tests that must not download anything.

>>> from rlsf_verl.data.choice import choice_problems
>>> p = choice_problems(1, seed=0)[0]
>>> p.kind, p.answer in "ABCDE"
('choice', True)
"""

from __future__ import annotations

import random

from rlsf_verl.data.problem import LETTERS, Problem

# (question, correct choice, distractors); the choice order is drawn per problem from the seed.
CHOICE_ITEMS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Where would you most likely keep milk so that it stays fresh?",
        "refrigerator",
        ("bookshelf", "oven", "garage", "mailbox"),
    ),
    ("What do people usually use to cut paper?", "scissors", ("spoon", "pillow", "hammer", "sponge")),
    (
        "If you are thirsty, what are you most likely to do?",
        "drink water",
        ("go to sleep", "read a map", "put on a coat"),
    ),
    ("Which of these is needed for a plant to make its own food?", "sunlight", ("sand", "darkness", "plastic")),
    ("Where do you usually go to borrow books for free?", "library", ("bakery", "airport", "gas station", "stadium")),
    (
        "What happens to liquid water when it is cooled below 0 degrees Celsius?",
        "it freezes into ice",
        ("it boils", "it turns into sand", "it becomes a gas"),
    ),
    (
        "What does a person use an umbrella for?",
        "staying dry in the rain",
        ("cooking dinner", "writing letters", "digging holes"),
    ),
    ("Which animal is known for carrying its home on its back?", "snail", ("dog", "horse", "eagle", "cow")),
    (
        "Where would you find a stove, a sink and a refrigerator in a house?",
        "kitchen",
        ("bedroom closet", "garden", "attic", "bathtub"),
    ),
    (
        "What is the main source of light for Earth during the day?",
        "the Sun",
        ("the Moon", "street lamps", "the stars", "lightning"),
    ),
    ("What do you call frozen water falling from the sky in soft white flakes?", "snow", ("sand", "dust", "fog")),
    (
        "A person who wants to get stronger muscles should most likely do what?",
        "exercise regularly",
        ("sleep all day", "skip every meal", "watch more television"),
    ),
    (
        "Which of these objects is attracted to a magnet?",
        "an iron nail",
        ("a wooden spoon", "a glass cup", "a rubber ball", "a paper towel"),
    ),
    ("Which body part do people use to hear sounds?", "ears", ("elbows", "knees", "teeth")),
    ("What do bees make that people like to eat?", "honey", ("cheese", "bread", "salt", "rice")),
    ("Where would a pilot most likely work?", "on an airplane", ("in a coal mine", "in a bakery", "in a library")),
    ("What season usually comes after winter?", "spring", ("autumn", "summer", "winter again")),
    (
        "If a glass falls onto a hard stone floor, what is likely to happen?",
        "it breaks",
        ("it grows", "it melts", "it floats up", "it turns into wood"),
    ),
    ("What does a thermometer measure?", "temperature", ("weight", "length", "time", "loudness")),
    ("Where do fish usually live?", "in water", ("in trees", "in deserts", "in the clouds")),
    ("Which of these is a mammal?", "whale", ("shark", "trout", "octopus", "crab")),
    ("Why do people wear coats in cold weather?", "to keep warm", ("to cool down", "to run faster", "to see better")),
    ("What do you need to unlock a locked door?", "a key", ("a pencil", "a plate", "a towel", "a leaf")),
    ("What gas do humans need to breathe in to stay alive?", "oxygen", ("helium", "carbon monoxide", "neon")),
    ("When you plant a seed and water it, what can it grow into?", "a plant", ("a rock", "a cloud", "a metal coin")),
    (
        "Where would you go to see a doctor when you are sick?",
        "a clinic",
        ("a cinema", "a shoe shop", "a car wash", "a zoo"),
    ),
    ("How many legs does a spider have?", "eight", ("six", "four", "ten", "two")),
    (
        "Which of these best helps you find your way in an unfamiliar city?",
        "a map",
        ("a blanket", "a frying pan", "a toothbrush"),
    ),
    (
        "What causes a shadow to form on the ground on a sunny day?",
        "an object blocking the light",
        ("wind blowing", "the ground being wet", "sound waves"),
    ),
    (
        "What do people usually do at a birthday party?",
        "celebrate with friends",
        ("take an exam", "file taxes", "repair a roof"),
    ),
    ("Which material is a good conductor of electricity?", "copper", ("rubber", "wood", "glass", "cloth")),
    ("What does a caterpillar turn into?", "a butterfly", ("a bird", "a frog", "a spider")),
)


def choice_problems(n: int, seed: int = 0) -> list[Problem]:
    """``n`` multiple-choice problems (ids ``choice-0000``...), deterministic for ``seed``.

    Items are taken in a seed-shuffled order with their choices in a seed-drawn order; past
    ``len(CHOICE_ITEMS)`` the items repeat in a new order, with their choices reordered.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = random.Random(seed)
    problems: list[Problem] = []
    while len(problems) < n:
        order = list(range(len(CHOICE_ITEMS)))
        rng.shuffle(order)
        for item in order[: n - len(problems)]:
            question, correct, distractors = CHOICE_ITEMS[item]
            choices = [correct, *distractors]
            rng.shuffle(choices)
            problems.append(
                Problem(
                    id=f"choice-{len(problems):04d}",
                    question=question,
                    answer=LETTERS[choices.index(correct)],
                    kind="choice",
                    choices=tuple(choices),
                    source="choice",
                )
            )
    return problems
