"""The interactive page (`archc render SPEC -o model.html`, archc/html_view.py): one self-contained document whose
figures are `archc info --json`'s, hostile names kept as text; then driven in headless Chromium (Debian's package
through Selenium): a stage, a run of repeated blocks and a block opened, the shapes shown compared with `archc info
--json`, a layer found by name, the keyboard, no request leaving the page, a U-Net's skips, a screenshot."""

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import B0, ROOT, browser_missing, run_archc
from test_render import HOSTILE_NAMES

import archc

DATA = re.compile(r'<script type="application/json" id="archc-data">(.*?)</script>', re.S)
# Names that would end the JSON's element, open a comment or run a script, were they written into the page as markup.
BREAKING_NAMES = HOSTILE_NAMES + ["</script><script>document.documentElement.dataset.injected = 1</script>", "<!-- <script>", "a & b"]
VOID = {"meta", "input", "br", "img", "hr", "link"}


class _Document(HTMLParser):
    """Python's HTML tokenizer, holding the page to one tree: every element closed, in order, inside one <html>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.roots, self.problems = [], 0, []

    def handle_starttag(self, tag, attrs):
        if not self.stack:
            self.roots += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def assert_one_document(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>\n")
    parser = _Document()
    parser.feed(page)
    parser.close()
    assert (parser.roots, parser.stack, parser.problems) == (1, [], [])


def embedded(page: str) -> dict:
    [text] = DATA.findall(page)
    return json.loads(text)


def test_page_is_one_document_holding_what_info_prints(tmp_path):
    out = run_archc("render", "efficientnet_b0", "--preset", "b1", "-o", tmp_path / "b1.html")
    assert out.returncode == 0 and out.stdout == f"wrote {tmp_path / 'b1.html'}\n", out.stderr
    page = (tmp_path / "b1.html").read_text()
    assert_one_document(page)
    info = run_archc("info", "efficientnet_b0", "--preset", "b1", "--json")
    assert embedded(page)["info"] == json.loads(info.stdout)  # one source: the page's figures are info's
    # Self-contained: the only elements that could load something are the two inline scripts.
    assert re.findall(r"<(script|link|img|iframe|object|embed)\b[^>]*>", page) == ["script", "script"]
    assert not re.search(r"\b(src|href)=", page)


def test_page_structure_of_b0():
    view = embedded(archc.render("efficientnet_b0", format="html"))["view"]
    assert [r["name"] for r in view["rows"]] == ["stem", "0", "1", "2", "3", "4", "5", "6", "head", "classifier"]
    stage3 = view["rows"][4]
    assert stage3["parts"] == ["stages.3.0", "stages.3.1", "stages.3.2"] and stage3["runs"] == [[1, 2]]  # the first block, then x 2
    assert view["parts"]["stages.3.1"]["layers"] == [f"stages.3.1.{m}" for m in (
        "conv_pw", "bn1", "act1", "conv_dw", "bn2", "act2", "se.conv_reduce", "se.act", "se.conv_expand", "se.gate", "conv_pwl", "bn3")]
    # The spec line: stage 3 is the fourth row of the stage table (line 34 of the file).
    rows = B0.read_text().splitlines()
    assert rows[33].strip().startswith("- [mbconv, 6, 3, 2,  80, 3]")
    assert view["parts"]["stages.3.1"]["line"] == "efficientnet_b0.yaml:34"
    assert view["parts"]["stem"]["line"] == f"efficientnet_b0.yaml:{next(i for i, r in enumerate(rows, 1) if r.startswith('stem:'))}"
    # A Plan carries no spec: the page says so rather than guess.
    assert embedded(archc.render(archc.lower("efficientnet_b0"), format="html"))["view"]["parts"]["stem"]["line"] is None


def test_unet_decoder_levels_join_their_stages():
    plan = archc.lower("unet3d_ct")
    view = embedded(archc.render(plan, format="html"))["view"]
    levels = {r["name"]: r for r in view["rows"] if r["name"].startswith("decoder.") and r["name"] != "decoder.head"}
    assert {name: r["skip"] for name, r in levels.items()} == {
        f"decoder.{level.index}": (None if level.skip is None else "stem" if level.skip.stage < 0 else str(level.skip.stage)) for level in plan.decoder.levels}
    assert levels["decoder.0"]["parts"] == ["decoder.levels.0.up", "decoder.levels.0.blocks.0", "decoder.levels.0.blocks.1"]


@pytest.mark.parametrize("name", BREAKING_NAMES)
def test_hostile_names_stay_inside_the_json(b0_spec, name):
    plain = archc.render(b0_spec, format="html", overrides={"name": "a plain name"}, resolution=64)
    page = archc.render(b0_spec, format="html", overrides={"name": name}, resolution=64)
    assert_one_document(page)
    [text] = DATA.findall(page)
    assert not set("<>&") & set(text)  # escaped: nothing in it can end the element or start markup
    assert json.loads(text)["info"]["name"] == name
    assert DATA.sub("", page) == DATA.sub("", plain)  # outside the JSON, the page does not depend on the name


def test_bad_destinations(tmp_path):
    out = run_archc("render", "efficientnet_b0", "-o", tmp_path / "missing" / "x.html")
    assert out.returncode == 1 and "x.html: cannot write: directory" in out.stderr and "Traceback" not in out.stderr
    out = run_archc("render", "efficientnet_b0", "-o", tmp_path / "x.htm")
    assert out.returncode == 2 and "unknown output format .htm; use .dot, .svg, .png, .pdf, or .html" in out.stderr
    with pytest.raises(archc.ArgumentError, match="unknown format 'svg'; expected html"):
        archc.render("efficientnet_b0", format="svg")


def test_assets_ship_in_the_package():
    """The page's script and style are files of the package, which the wheel holds whole (packages = ["archc"])."""
    assert (ROOT / "archc" / "html_view.js").is_file() and (ROOT / "archc" / "html_view.css").is_file()
    assert 'packages = ["archc"]' in (ROOT / "pyproject.toml").read_text()


# ----------------------------------------------------------------------------------------------- in a real browser

BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1366,850"]
needs_browser = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module's tests. Both paths are given, so Selenium Manager downloads nothing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    archc.render("efficientnet_b0", folder / "b0.html")
    archc.render("unet3d_ct", folder / "unet.html")
    archc.render(B0, folder / "hostile.html", overrides={"name": BREAKING_NAMES[-3]}, resolution=64)
    return folder


def open_page(driver, path: Path) -> None:
    driver.get_log("performance")  # drop what earlier pages logged
    driver.get(path.as_uri())
    assert driver.execute_script("return typeof archcView") == "object"  # the script ran to its end
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def item(driver, id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'[data-id="{id}"]')


def open_item(driver, id: str) -> None:
    from selenium.webdriver.common.by import By

    item(driver, id).find_element(By.CSS_SELECTOR, ":scope > .box").click()


def panel(driver) -> dict:
    return driver.execute_script("return Object.fromEntries([...document.querySelectorAll('#panel-fields dd')].map(d => [d.dataset.field, d.textContent]))")


def shape(values) -> str:
    return "\u00d7".join(map(str, values))


@needs_browser
def test_open_stage_run_block_and_layer_shapes_equal_info(browser, pages):
    info = json.loads(run_archc("info", "efficientnet_b0", "--json").stdout)
    open_page(browser, pages / "b0.html")
    top = browser.execute_script("return [...document.querySelectorAll('#tree > .item')].map(i => [i.dataset.id, i.querySelector('.summary').textContent])")
    assert [(id, text.split(" \u00b7 ")[0]) for id, text in top] == [(f"row:{s['name']}", "out " + shape(s["output_shape"])) for s in info["stages"]]
    assert browser.execute_script("return document.querySelectorAll('.item').length") == len(info["stages"])  # opens at stage level

    open_item(browser, "row:3")
    assert item(browser, "row:3").get_attribute("aria-expanded") == "true"
    assert panel(browser)["shape"] == shape(info["stages"][4]["output_shape"]) and panel(browser)["params"] == f"{info['stages'][4]['params']:,}"
    run = item(browser, "run:3|1|2")
    assert "x 2" in run.text and "stages.3.1 \u2026 stages.3.2" in run.text  # the repeated blocks, collapsed
    assert browser.execute_script("return document.querySelectorAll('[data-id^=\"part:stages.3.2\"]').length") == 0
    open_item(browser, "run:3|1|2")
    open_item(browser, "part:stages.3.1")
    blocks = {b["path"]: b for b in info["blocks"]}
    assert panel(browser)["shape"] == shape(blocks["stages.3.1"]["output_shape"])
    assert panel(browser)["line"] == "efficientnet_b0.yaml:34"
    layers = {entry["path"]: entry for entry in info["layers"]}
    for path in ("stages.3.1.conv_pw", "stages.3.1.conv_dw", "stages.3.1.se.conv_reduce", "stages.3.1.conv_pwl"):
        open_item(browser, f"layer:{path}")
        shown = panel(browser)
        assert (shown["path"], shown["shape"], shown["params"]) == (path, shape(layers[path]["output_shape"]), f"{layers[path]['params']:,}")
    open_item(browser, "row:3")  # and back
    assert item(browser, "row:3").get_attribute("aria-expanded") == "false" and not item(browser, "layer:stages.3.1.conv_dw").is_displayed()


@needs_browser
def test_search_and_keyboard(browser, pages):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, pages / "b0.html")
    body = browser.find_element("css selector", "body")
    body.send_keys("/")  # jumps to the search box
    search = browser.switch_to.active_element
    assert search.get_attribute("id") == "search"
    search.send_keys("stages.5.3.conv_dw", Keys.ENTER)
    selected = browser.switch_to.active_element
    assert selected.get_attribute("data-id") == "layer:stages.5.3.conv_dw" and "selected" in selected.get_attribute("class")
    assert panel(browser)["path"] == "stages.5.3.conv_dw"
    assert [browser.execute_script("return arguments[0].getAttribute('aria-expanded')", item(browser, i)) for i in ("row:5", "run:5|1|3", "part:stages.5.3")] == ["true"] * 3
    search.clear()
    search.send_keys("conv_nothing", Keys.ENTER)
    assert browser.find_element("id", "search-status").text == "no layer named conv_nothing"

    open_page(browser, pages / "b0.html")
    browser.execute_script("arguments[0].focus()", item(browser, "row:stem"))  # as Tab reaches the tree
    browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN)  # to stage 1
    assert browser.switch_to.active_element.get_attribute("data-id") == "row:1"
    browser.switch_to.active_element.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_DOWN)  # open, into it, next
    assert browser.switch_to.active_element.get_attribute("data-id") == "part:stages.1.1"
    browser.switch_to.active_element.send_keys(Keys.ENTER)  # a block opens into its layers
    assert item(browser, "layer:stages.1.1.conv_dw").is_displayed()
    browser.switch_to.active_element.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT)  # close it, up to the stage, close that
    assert browser.switch_to.active_element.get_attribute("data-id") == "row:1" and item(browser, "row:1").get_attribute("aria-expanded") == "false"


@needs_browser
def test_no_request_leaves_the_page_and_names_stay_text(browser, pages):
    open_page(browser, pages / "hostile.html")
    assert browser.title == BREAKING_NAMES[-3] + " \u00b7 archc"
    assert browser.find_element("id", "title").text == BREAKING_NAMES[-3]
    assert browser.execute_script("return [document.scripts.length, document.documentElement.dataset.injected === undefined]") == [2, True]
    browser.execute_script("archcView.find('stages.3.1.conv_dw'); archcView.expand('row:6')")
    requested = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requested if m["method"] == "Network.requestWillBeSent"]
    assert urls and all(url.startswith("file:") for url in urls), urls  # the page itself, nothing else
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources == []


@needs_browser
def test_unet_skips_and_a_readable_screenshot(browser, pages, tmp_path):
    plan = archc.lower("unet3d_ct")
    open_page(browser, pages / "unet.html")
    skips = sum(level.skip is not None for level in plan.decoder.levels)
    assert browser.execute_script("return document.querySelectorAll('#skips path').length") == skips
    browser.execute_script("archcView.find('decoder.levels.1.blocks.0.conv')")
    assert panel(browser)["shape"] == shape(archc.analyze(plan).layer("decoder.levels.1.blocks.0.conv").shape)
    assert browser.execute_script("return document.querySelectorAll('#skips path').length") == skips  # redrawn after opening
    png = tmp_path / "unet.png"
    assert browser.save_screenshot(str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@needs_browser
def test_millimetres_equal_info_spacing(browser, tmp_path, capsys):
    """`archc render --spacing 5,0.7,0.7 -o x.html`: every stage's panel shows the voxel size, extent and receptive
    field in mm that `archc info --spacing` prints for it (stage 2: 10x5.6x5.6, 320x157x157, 105x46.9x46.9)."""
    from archc.cli import main

    assert main(["render", "efficientnet3d_b0", "--spacing", "5,0.7,0.7", "-o", str(tmp_path / "ct.html")]) == 0
    assert main(["info", "efficientnet3d_b0", "--spacing", "5,0.7,0.7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("in millimetres, at 5x0.7x0.7 mm voxels:")
    printed = {line.split()[0]: line.split()[1:] for line in lines[start + 2:] if line and not line.startswith("-")}
    assert printed["2"] == ["10x5.6x5.6", "320x157x157", "105x46.9x46.9"]
    open_page(browser, tmp_path / "ct.html")
    assert browser.find_element("id", "totals").text.endswith(" \u00b7 at 5x0.7x0.7 mm voxels")
    for name, (voxel, extent, field) in printed.items():
        browser.execute_script("archcView.select(arguments[0])", f"row:{name}")
        shown = panel(browser)
        assert (shown["voxelMm"], shown["extentMm"], shown["rfMm"]) == (voxel, extent, field), name
    browser.execute_script("archcView.select('row:classifier')")  # the scores have no extent
    assert "extentMm" not in panel(browser)
    with pytest.raises(SystemExit) as exit:  # a usage error, as argparse's own
        main(["render", "efficientnet3d_b0", "--spacing", "5,0.7,0.7", "-o", str(tmp_path / "ct.svg")])
    assert exit.value.code == 2
    assert capsys.readouterr().err == "archc: error: --spacing: millimetres are shown on the interactive page: -o FILE.html (or archc info --spacing)\n"
    assert main(["render", "efficientnet3d_b0", "--spacing", "5,0.7", "-o", str(tmp_path / "bad.html")]) == 1
    assert "spacing has 2 values for a 3D network" in capsys.readouterr().err and not (tmp_path / "bad.html").exists()
