"""The HTML leaderboard page: self-contained, a tab per setting, sortable tables, embedded plots.
The last test opens it in a real headless Chromium (Debian's chromium + chromedriver, via
Selenium): skipped locally when they are missing, a failure under CI=true. Fake run directories
only (no model)."""

from __future__ import annotations

import argparse
import base64
import os
import re
from pathlib import Path

import pytest

from mmu_bench import leaderboard as lb
from test_leaderboard import metrics, make_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def runs(tmp_path):
    """visual: ga (3 seeds) and npo (1 seed); full: ga and npo, one seed each."""
    root = tmp_path / "runs"
    for seed, (f, r) in enumerate([(0.1, 0.7), (0.2, 0.8), (0.3, 0.9)]):
        make_run(root, "ga", seed, metrics(f, r))
    make_run(root, "npo", 0, metrics(0.4, 0.95))
    make_run(root, "ga", 0, metrics(0.3, 0.6) | {"forget.qa.mcq.acc": 0.3}, setting="full")
    make_run(root, "npo", 0, metrics(0.5, 0.9) | {"forget.qa.mcq.acc": 0.2}, setting="full")
    return root


def page(root, **kw) -> str:
    return lb.render(lb.aggregate(lb.collect([root])), "html", **kw)


def test_page_is_self_contained_with_a_tab_per_setting(runs):
    text = page(runs, title="Board", provenance=["made by a test"])
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # nothing fetched from elsewhere: no URL, no src/href but inline data
    assert not re.search(r"https?://", text)
    assert all(v.startswith("data:") for v in re.findall(r'(?:src|href)="([^"]*)"', text))
    assert '<p class="provenance">made by a test</p>' in text and "<h2>Board</h2>" in text
    assert re.findall(r'<section class="setting" data-setting="(\w+)"', text) == ["visual", "full"]
    assert re.findall(r'<button type="button" data-setting="(\w+)"', text) == ["visual", "full"]


def test_cells_carry_stable_attributes(runs):
    text = page(runs)
    tr = re.search(r'<tr data-row="ga" data-kind="method"[^>]*>(.*?)</tr>', text).group(1)
    td = re.search(r'<td data-key="forget.vqa.mcq.acc"([^>]*)>(.*?)</td>', tr)
    assert 'data-value="0.2"' in td.group(1) and "data-ci-low=" in td.group(1) and "95 % CI" in td.group(1)
    assert td.group(2).startswith("<b>0.200 ± 0.100</b>") and '<small class="ci">[' in td.group(2)
    ref = re.search(r'<tr data-row="finetuned \(ref\)" data-kind="reference"[^>]*>(.*?)</tr>', text).group(1)
    assert '<td data-key="forget.vqa.mcq.acc" data-value="1.0">1.000</td>' in ref   # no CI: one evaluation
    assert '<td data-key="mia.vqa.loss.auc">' not in text                           # not a static column
    assert '<th data-key="retain.vqa.mcq.acc" data-direction="up"' in text


def test_plots_are_embedded(runs, tmp_path):
    groups = lb.aggregate(lb.collect([runs]))
    pngs = lb.plot(groups, tmp_path / "plots")
    text = lb.render(groups, "html", plots=pngs)
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"/>', text)
    assert sorted(alt for _, alt in imgs) == sorted(p.name for p in pngs)
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data, _ in imgs)
    # each plot sits in its own setting's tab
    full = text[text.index('<section class="setting" data-setting="full"'):]
    assert "synthetic__tiny-llava__full__static__forget_10.png" in full
    assert "synthetic__tiny-llava__visual__static__forget_10.png" not in full


def test_command_embeds_the_plots_it_writes(runs, tmp_path):
    parser = argparse.ArgumentParser()
    lb.add_command(parser.add_subparsers(dest="command"))
    out = tmp_path / "leaderboard.html"
    args = parser.parse_args(["leaderboard", str(runs), "--out", str(out), "--plots", str(tmp_path / "plots")])
    assert args.func(args) == 0
    assert out.read_text().count('<img src="data:image/png;base64,') == 2


def _need(ok: bool, why: str) -> None:
    """Skip when the browser is missing here, but fail in CI, where it must be installed (.ci/run)."""
    if not ok:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(why)


@pytest.fixture
def browser():
    _need(CHROMIUM.exists() and CHROMEDRIVER.exists(),
          f"{CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need(False, "selenium is not installed (pip install -e '.[dev]')")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.binary_location = str(CHROMIUM)
    # the Debian driver, given explicitly, so Selenium Manager downloads nothing
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def test_sorting_and_tabs_in_a_real_browser(runs, tmp_path, browser):
    from selenium.webdriver.common.by import By

    f = tmp_path / "leaderboard.html"
    f.write_text(page(runs))
    browser.get(f.as_uri())
    visual = browser.find_element(By.CSS_SELECTOR, 'section[data-setting="visual"]')
    full = browser.find_element(By.CSS_SELECTOR, 'section[data-setting="full"]')
    assert visual.is_displayed() and not full.is_displayed()     # the first tab is open

    table = visual.find_element(By.CSS_SELECTOR, "table.leaderboard")

    def first(key):
        row = table.find_element(By.CSS_SELECTOR, "tbody.method tr")
        return row.get_attribute("data-row"), row.find_element(By.CSS_SELECTOR, f'td[data-key="{key}"]')

    key = "retain.vqa.mcq.acc"
    assert first(key)[0] == "ga"                                  # by label before any click
    header = table.find_element(By.CSS_SELECTOR, f'th[data-key="{key}"]')
    header.click()                                                # ↑: best (highest) first
    label, cell = first(key)
    assert label == "npo" and cell.get_attribute("data-value") == "0.95"
    header.click()                                                # again: reversed
    label, cell = first(key)
    assert label == "ga" and cell.get_attribute("data-value") == "0.8"
    table.find_element(By.CSS_SELECTOR, 'th[data-key="forget.vqa.mcq.acc"]').click()   # ↓: lowest first
    assert first("forget.vqa.mcq.acc")[0] == "ga"
    # reference rows stay on top, in their own block
    assert table.find_element(By.CSS_SELECTOR, "tbody tr").get_attribute("data-kind") == "reference"

    browser.find_element(By.CSS_SELECTOR, 'nav.tabs button[data-setting="full"]').click()
    assert full.is_displayed() and not visual.is_displayed()
    assert full.find_element(By.CSS_SELECTOR, "table.leaderboard").is_displayed()


def test_a_missing_browser_skips_here_but_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        _need(False, "no browser")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _need(False, "no browser")
