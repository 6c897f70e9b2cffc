"""`report.html` of `rlsf-verl compare` opens in headless Chromium with every plot loaded and visible, and the
reward model's token view (the paper's Figure 2) of a pipeline run with every token drawn in its reward's colour.

Needs Debian's Chromium (`apt-get install chromium`); without it these tests fail and say so.
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.utils.tracking import FileLogger

from rlsf_verl.analysis.compare import compare_runs

WINDOW = (1400, 3200)
# The probe records, once the page has loaded, each image's natural width and where it sits on the page,
# and each token of the token view: its text, reward, drawn background colour and box.
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images].map((img) => { const r = img.getBoundingClientRect();
    return {src: img.getAttribute("src"), natural: img.naturalWidth, x: r.left + scrollX, y: r.top + scrollY,
            width: r.width, height: r.height}; });
  const tokens = [...document.querySelectorAll("pre.tokens .tok")].map((span) => {
    const r = span.getClientRects()[0] || {left: 0, top: 0, width: 0, height: 0};
    return {text: span.textContent, reward: Number(span.dataset.reward),
            background: getComputedStyle(span).backgroundColor,
            x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; });
  document.body.setAttribute("data-probe", JSON.stringify({images, tokens, height: document.body.scrollHeight}));
});</script>"""
# The token view's rows, as the eval_rm stage writes them: rewards that rise along the chosen response
# and fall along the rejected one.
TOKEN_ROWS = [
    {
        "pair": 0,
        "prompt_index": 3,
        "side": "chosen",
        "correct": True,
        "tokens": ["7", " +", " 5", " =", " 12", ".", "<|im_end|>", "\n"],
        "rewards": [-0.2, 0.1, 0.3, 0.35, 0.9, 1.1, 1.1, 1.25],
        "reward": 1.25,
    },
    {
        "pair": 0,
        "prompt_index": 3,
        "side": "rejected",
        "correct": False,
        "tokens": ["7", " +", " 5", " =", " 13", "<|im_end|>", "\n"],
        "rewards": [-0.2, 0.1, 0.3, 0.35, -0.8, -0.8, -0.95],
        "reward": -0.95,
    },
]


def make_pipeline_run(run: Path, rng: np.random.Generator) -> Path:
    """An `rlsf-verl run` directory: its before/after evaluation and the eval_rm stage's token rewards."""
    (run / "eval").mkdir(parents=True)
    for stage, p_correct in (("before", 0.4), ("after", 0.6)):
        rows = [
            {"correct": bool(rng.random() < p_correct), "confidence": float(rng.uniform(0.1, 0.9)), "no_answer": False}
            for _ in range(30)
        ]
        (run / "eval" / f"{stage}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run / "eval" / "rm_token_rewards.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TOKEN_ROWS))
    return run


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("Chromium is not installed; these tests need it: apt-get install chromium (Debian's package)")


def run_chromium(page: Path, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *flags,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def make_run(run: Path, monkeypatch, entropy: list[float], confidence: list[float], acc: list[float]) -> Path:
    """A verl run written by verl's FileLogger and its trainer's validation dump writer."""
    run.mkdir(parents=True)
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(run / "metrics.jsonl"))
    logger = FileLogger(project_name="rlsf", experiment_name=run.name)
    for step, value in enumerate(entropy, start=1):
        logger.log(
            data={
                "actor/entropy": value,
                "critic/score/mean": 1 - value,
                "response_length/mean": 80.0 * value,
                "rlif/self_certainty/mean": 2 - value,
                "rlif/guard/fired": float(step == 3),
            },
            step=step,
        )
    logger.finish()
    n = len(acc)
    for step in (0, len(entropy)):
        PPOTrainer._write_generations(
            [f"q{i}" for i in range(n)],
            [f"a{i}" for i in range(n)],
            ["1"] * n,
            acc,
            {"reward": acc, "acc": acc, "confidence": confidence, "uid": list(range(n))},
            str(run / "validation"),
            step,
        )
    return run


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    with pytest.MonkeyPatch.context() as mp:
        runs = [
            make_run(
                root / name,
                mp,
                list(np.linspace(1.0, low, 6)),
                list(rng.uniform(0.05, 0.95, 40)),
                [float(x < p_correct) for x in rng.random(40)],
            )
            for name, low, p_correct in (("rlif", 0.1, 0.3), ("rlvr", 0.7, 0.8))
        ]
    runs.append(make_pipeline_run(root / "rlsf", rng))
    out = root / "report"
    compare_runs(runs, out)
    return out


@pytest.fixture(scope="module")
def probe(report_dir, tmp_path_factory) -> dict:
    """Chromium's view of the report: the probe's JSON, read from the rendered DOM."""
    copy = tmp_path_factory.mktemp("probe") / "report"
    shutil.copytree(report_dir, copy)
    page = copy / "probe.html"
    page.write_text((copy / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = run_chromium(page, copy.parent, "--virtual-time-budget=10000", "--dump-dom").stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, f"the probe did not run; DOM starts: {dom[:300]!r}"
    return json.loads(html.unescape(found.group(1)))


def test_page_links_only_files_of_the_report_folder(report_dir):
    page = (report_dir / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    report = json.loads((report_dir / "report.json").read_text())
    expected = [*report["plots"]["curves"].values(), report["plots"]["reliability"]]
    assert sorted(sources) == sorted(expected) and len(sources) == 7
    assert all((report_dir / src).is_file() for src in sources)
    assert "http://" not in page and "https://" not in page


def test_every_plot_loads_in_chromium(probe):
    images = probe["images"]
    assert len(images) == 7
    for image in images:
        assert image["natural"] > 0, f"{image['src']} did not load"
        assert image["width"] > 300 and image["height"] > 200, image


def test_screenshot_shows_a_drawn_plot_in_every_image_region(report_dir, probe, tmp_path):
    assert probe["height"] <= WINDOW[1], "the page is taller than the screenshot window"
    shot = tmp_path / "report.png"
    run_chromium(report_dir / "report.html", tmp_path, f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    for image in probe["images"]:
        x, y = round(image["x"]), round(image["y"])
        region = pixels[y : y + round(image["height"]), x : x + round(image["width"])]
        ink = (region.sum(axis=2) < 600).mean()  # share of clearly non-white pixels: axes, text, lines, bars
        blue = (np.abs(region - [31, 119, 180]).sum(axis=2) < 40).sum()  # matplotlib's first colour
        assert ink > 0.02 and blue > 100, f"{image['src']}: ink {ink:.3f}, blue pixels {blue}"
    above = pixels[: round(min(image["y"] for image in probe["images"]))]
    assert (above.sum(axis=2) < 600).mean() > 0.01, "no table text above the plots"


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"\d+", css)[:3])


def test_the_token_view_draws_every_token_of_the_pipeline_runs_responses_in_order(probe):
    tokens = probe["tokens"]
    assert [t["text"] for t in tokens] == [text for row in TOKEN_ROWS for text in row["tokens"]]
    assert [t["reward"] for t in tokens] == [r for row in TOKEN_ROWS for r in row["rewards"]]
    for token in tokens:
        if token["text"].strip():
            assert token["width"] > 3 and token["height"] > 8, token


def test_each_token_is_coloured_by_its_reward_red_low_to_green_high(probe):
    tokens = probe["tokens"]
    lowest, highest = min(tokens, key=lambda t: t["reward"]), max(tokens, key=lambda t: t["reward"])
    assert rgb(lowest["background"]) == (215, 48, 39) and rgb(highest["background"]) == (26, 152, 80)
    greenness = [(t["reward"], rgb(t["background"])[1] - rgb(t["background"])[0]) for t in tokens]
    ordered = [g for _, g in sorted(greenness)]
    assert ordered == sorted(ordered) and ordered[0] < 0 < ordered[-1]  # redder below, greener above


def test_screenshot_shows_the_token_colours(report_dir, probe, tmp_path):
    shot = tmp_path / "report.png"
    run_chromium(report_dir / "report.html", tmp_path, f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    for token in probe["tokens"]:
        if not token["text"].strip():
            continue
        assert token["y"] + token["height"] <= WINDOW[1], "the token view is below the screenshot window"
        x, y, w, h = (round(token[k]) for k in ("x", "y", "width", "height"))
        region = pixels[y : y + h, x : x + w].reshape(-1, 3)
        expected = np.array(rgb(token["background"]))
        share = (np.abs(region - expected).sum(axis=1) < 12).mean()  # the background, around the glyphs
        assert share > 0.3, f"{token['text']!r}: {share:.2f} of its box has its colour {token['background']}"
