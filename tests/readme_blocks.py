"""The code a README shows, for the tests that check it runs as written (tests/test_readme_on_cpu.py,
tests/recipes/test_recipes_on_cpu.py). Not a test module: those add this folder to ``sys.path``.

>>> bash_commands("```bash\\nbash run.sh \\\\\\n  k=1   # note\\n# only a comment\\n```\\n")
['bash run.sh k=1']
"""

import re


def fenced_blocks(markdown: str, language: str) -> list[str]:
    """The text of every fenced ```` ```language ```` block of ``markdown``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, flags=re.S | re.M)


def bash_commands(markdown: str) -> list[str]:
    """Every command of every bash block: continuation lines joined, comments dropped, runs of
    whitespace made one space; the text is otherwise kept, so it still runs in a shell."""
    commands = []
    for block in fenced_blocks(markdown, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].split(" # ")[0].strip()
            if command and not command.startswith("#"):
                commands.append(re.sub(r"\s+", " ", command))
    return commands
