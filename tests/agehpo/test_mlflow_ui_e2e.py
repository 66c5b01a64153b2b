"""What a user sees in MLflow's own UI, checked in a real headless Chromium (Debian's package,
driven by Playwright): nested trials, pruned versus complete, the curves of every trial, a
trial's params and state, the parent's HTML plots drawn, and the champion with its signature.

Screenshots are kept under the test's tmp dir (``screens/``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
from _procs import agehpo_command, agehpo_env, free_port, run, running, wait_http
from mlflow import MlflowClient

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The summary's link (README, "Looking at the results in MLflow"), on mlflow ui's port.
LINK = re.compile(
    r"http://127\.0\.0\.1:5000(/#/experiments/\d+/runs\?workflowType=machine_learning)"
)
TIMEOUT_MS = 30_000


@dataclass
class Ui:
    """A tracked study and the `mlflow ui` showing it."""

    base: str
    link: str
    study: optuna.Study
    client: MlflowClient
    screens: Path


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs it")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium: apt-get install chromium (.ci/run does)")
    tmp = tmp_path_factory.mktemp("ui")
    uri, storage = f"sqlite:///{tmp}/mlflow.db", f"sqlite:///{tmp}/optuna.db"
    env = agehpo_env(tmp, uri)
    study_args = ("--sampler", "random", "--n-trials", "8", "--n-epochs", "4")
    small = ("--n-samples", "600", "--img-size", "12", "--device", "cpu", "--storage", storage)
    status, output = run(
        agehpo_command("study", *study_args, *small, "--study-name", "look"),
        env=env,
        cwd=tmp,
        log=tmp / "study.log",
        timeout=300,
    )
    assert status == 0, output[-3000:]
    link = LINK.search(output)
    assert link is not None, output[-2000:]
    study = optuna.load_study(study_name="look", storage=storage)
    states = {t.state for t in study.trials}
    # The state checks below need both kinds (random, seed 13: 2 of 8 are pruned).
    assert {optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE} <= states
    port = free_port()
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--port", str(port)]
    with running(command, env=env, cwd=tmp, log=tmp / "ui.log") as server:
        base = f"http://127.0.0.1:{port}"
        wait_http(base, server, timeout=120)
        screens = tmp / "screens"
        screens.mkdir()
        yield Ui(base, base + link.group(1), study, MlflowClient(uri), screens)


@pytest.fixture
def page(ui: Ui) -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        browser.close()


def _experiment(ui: Ui) -> str:
    return ui.link.split("/experiments/")[1].split("/")[0]


def _runs_list(page: Page, ui: Ui) -> None:
    """The summary's link, the parent expanded (MLflow 3.17 collapses its children)."""
    page.goto(ui.link)
    parent = page.get_by_role("row").filter(has_text="look-random")
    parent.first.wait_for()
    assistant = page.get_by_text("MLflow Assistant")  # a side panel: room for the table
    if assistant.is_visible():
        page.locator("button[aria-label*='lose']").first.click()
    assert not page.get_by_text("trial-0", exact=True).is_visible()
    parent.get_by_role("button").first.click()
    page.get_by_text("trial-0", exact=True).wait_for()


def _row_of(page: Page, name: str) -> str:
    """The text of run ``name``'s row; the table splits a row between pinned and scrolled
    parts, so the row index joins them."""
    cell = page.get_by_text(name, exact=True).first
    index = cell.locator("xpath=ancestor::*[@role='row'][1]").get_attribute("row-index")
    parts = page.locator(f"[role=row][row-index='{index}']")
    return " ".join(parts.nth(i).inner_text() for i in range(parts.count()))


def test_the_trials_nest_under_the_parent_run(page: Page, ui: Ui) -> None:
    _runs_list(page, ui)
    for trial in ui.study.trials:
        assert page.get_by_text(f"trial-{trial.number}", exact=True).is_visible()
    page.screenshot(path=ui.screens / "runs_nested.png")


def test_pruned_trials_stand_out_from_complete_ones(page: Page, ui: Ui) -> None:
    _runs_list(page, ui)
    # The README's recipe: Columns -> the tag optuna.trial_state (MLflow keeps the choice).
    page.get_by_role("button", name="Columns", exact=True).click()
    page.get_by_placeholder("Search columns").fill("trial_state")
    page.get_by_text("optuna.trial_state", exact=True).click()
    page.keyboard.press("Escape")
    for trial in ui.study.trials:
        row = _row_of(page, f"trial-{trial.number}")
        assert trial.state.name in row, (trial.number, row)
    page.screenshot(path=ui.screens / "runs_state.png")


def test_the_chart_view_draws_val_age_accuracy_for_every_trial(page: Page, ui: Ui) -> None:
    _runs_list(page, ui)
    chart_mode = page.locator("input[value=CHART]").locator("xpath=../..")
    chart_mode.click()
    # MLflow shows the 10 newest runs: the README says to pick "Show all runs".
    page.get_by_role("button", name="Toggle visibility of runs").click()
    page.get_by_text("Show all runs", exact=True).click()
    page.get_by_placeholder("Search metric charts").fill("val_age_accuracy")
    for trial in ui.study.trials:
        legend = f"trial-{trial.number} (val_age_accuracy)"
        page.get_by_text(legend, exact=True).first.wait_for()
    page.screenshot(path=ui.screens / "chart_val_age_accuracy.png")


def test_a_trial_page_shows_its_params_and_state(page: Page, ui: Ui) -> None:
    pruned = next(t for t in ui.study.trials if t.state.name == "PRUNED")
    [run] = ui.client.search_runs(
        [_experiment(ui)], f"tags.`optuna.trial_number` = '{pruned.number}'"
    )
    page.goto(f"{ui.base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    page.get_by_text("optuna.trial_state").first.wait_for()
    text = page.inner_text("body")
    assert "PRUNED" in text
    for name, value in pruned.params.items():
        assert name in text and str(value) in text, name
    page.screenshot(path=ui.screens / "trial.png", full_page=True)


def test_the_parents_html_plot_is_drawn(page: Page, ui: Ui) -> None:
    [parent] = ui.client.search_runs([_experiment(ui)], "attributes.run_name = 'look-random'")
    experiment, run_id = parent.info.experiment_id, parent.info.run_id
    artifact = "artifacts/plots/optimization_history.html"
    page.goto(f"{ui.base}/#/experiments/{experiment}/runs/{run_id}/{artifact}")
    frame = page.frame_locator("iframe").first
    # Drawn, not a blank frame: plotly's SVG holds the trials' markers.
    frame.locator("svg.main-svg g.trace").first.wait_for()
    assert frame.locator("svg.main-svg g.trace path").count() > 0
    page.screenshot(path=ui.screens / "plot.png")


def test_the_champion_has_its_alias_and_a_signature(page: Page, ui: Ui) -> None:
    champion = ui.client.get_model_version_by_alias("age-predictor", "champion")
    page.goto(f"{ui.base}/#/models/age-predictor/versions/{champion.version}")
    page.get_by_text("champion").first.wait_for()
    inputs = page.get_by_text(re.compile(r"Inputs \(\d+\)")).first
    inputs.wait_for()
    assert inputs.inner_text() != "Inputs (0)"
    assert re.search(r"Outputs \([1-9]\d*\)", page.inner_text("body"))
    page.screenshot(path=ui.screens / "model.png", full_page=True)
