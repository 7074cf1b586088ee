"""The studio page in Debian's Chromium against a live ``kokoro-api serve`` (see conftest.py)."""

from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.browser

TEXT = "Hello from Kokoro Studio. This sentence is spoken by a mix of two voices."


def _wait(driver, predicate, timeout=60.0, what="condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: predicate(d))
    except Exception as exc:
        logs = _console(driver)
        raise AssertionError(f"timed out waiting for {what}; browser console:\n{logs}") from exc


def _wait_generated(driver, what: str) -> None:
    """Until the waveform of a finished generation is drawn and the Generate button is enabled again."""
    _wait(
        driver,
        lambda d: (
            _by_id(d, "waveform").get_attribute("data-drawn") == "true"
            and d.execute_script("return !document.getElementById('generate').disabled")
        ),
        120,
        what,
    )


def _console(driver) -> str:
    try:
        return "\n".join(f"{e['level']}: {e['message']}" for e in driver.get_log("browser"))
    except Exception:  # noqa: BLE001 - best effort diagnostics
        return "(no console log)"


def _by_id(driver, id_):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, id_)


def _open(browser, server_url):
    driver = browser.driver
    driver.get(f"{server_url}/web")
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), 30, "voices")
    return driver


def _error_text(driver) -> str:
    box = _by_id(driver, "error")
    return "" if box.get_attribute("hidden") is not None else _by_id(driver, "error-text").text


def _set_script(driver, text):
    from selenium.webdriver.common.keys import Keys

    area = _by_id(driver, "script")
    area.click()
    area.send_keys(Keys.CONTROL, "a")
    area.send_keys(Keys.DELETE)
    if text:
        area.send_keys(text)


def _canvas_ink(driver) -> int:
    """Pixels of the waveform canvas that are not fully transparent."""
    return driver.execute_script(
        """
        const c = document.getElementById('waveform');
        if (!c.width || !c.height) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;
        """
    )


def test_page_is_served_and_offline(browser, server_url):
    driver = _open(browser, server_url)
    assert driver.current_url.rstrip("/").endswith("/web")
    assert driver.title == "Kokoro Studio"
    # Every resource the page loaded came from the server itself: no CDN, no external fonts.
    origins = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert origins and set(origins) == {server_url}
    # Voices are grouped by accent and gender.
    groups = driver.execute_script(
        "return [...document.querySelectorAll('#voice-picker optgroup')].map(g => g.label)"
    )
    assert "American English · Female" in groups and "British English · Male" in groups
    # The server's limit is shown next to the live counts.
    assert _by_id(driver, "char-limit").text == "4096"
    _set_script(driver, "one two three")
    assert _by_id(driver, "char-count").text == "13"
    assert _by_id(driver, "word-count").text == "3"


def test_empty_script_shows_an_error(browser, server_url):
    driver = _open(browser, server_url)
    _set_script(driver, "")
    _by_id(driver, "generate").click()
    _wait(driver, lambda d: _error_text(d), 10, "an error message")
    assert "empty" in _error_text(driver).lower()
    assert _by_id(driver, "error").get_attribute("role") == "alert"
    assert driver.switch_to.active_element == _by_id(driver, "script")


def test_generate_two_voice_mix_play_download_and_history(browser, server_url, artifacts_dir):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver = _open(browser, server_url)
    _set_script(driver, TEXT)

    # Two-voice mix: af_heart is the default; add af_bella (equal shares), then move af_heart to 70 %
    # with the keyboard (PageUp is +10 on a 0-100 range).
    assert _by_id(driver, "mix-string").get_attribute("value") == "af_heart"
    Select(_by_id(driver, "blend-picker")).select_by_value("af_bella")
    _by_id(driver, "voice-add").click()
    assert _by_id(driver, "mix-string").get_attribute("value") == "af_heart(50)+af_bella(50)"
    slider = _by_id(driver, "mix-af_heart")
    slider.send_keys(Keys.PAGE_UP, Keys.PAGE_UP)
    mix = "af_heart(70)+af_bella(30)"
    _wait(driver, lambda d: _by_id(d, "mix-string").get_attribute("value") == mix, 5, "the mix string")
    assert _by_id(driver, "mix-af_bella").get_attribute("value") == "30"

    driver.find_element("css selector", "input[name=format][value=mp3]").click()
    _by_id(driver, "generate").click()

    # The audio element gets a real duration, and playback starts.
    _wait(
        driver,
        lambda d: d.execute_script(
            "const a = document.getElementById('audio'); return Number.isFinite(a.duration) && a.duration > 0"
        ),
        120,
        "audio with a duration",
    )
    _wait(driver, lambda d: _by_id(d, "generate").is_enabled(), 120, "the generation to finish")
    assert not _error_text(driver), _error_text(driver)
    duration = driver.execute_script("return document.getElementById('audio').duration")
    assert 1.0 < duration < 60.0
    _wait(
        driver,
        lambda d: d.execute_script("return document.getElementById('audio').currentTime > 0"),
        30,
        "playback to start",
    )

    # The waveform is drawn from the decoded audio.
    _wait(driver, lambda d: _by_id(d, "waveform").get_attribute("data-drawn") == "true", 30, "the waveform")
    assert _canvas_ink(driver) > 500

    # Download with a sensible file name.
    link = _by_id(driver, "download")
    name = link.get_attribute("download")
    pattern = r"kokoro_af_heart70-af_bella30_hello-from-kokoro-studio-this_\d{8}-\d{6}\.mp3"
    assert re.fullmatch(pattern, name), name
    link.click()
    target = browser.download_dir / name
    _wait(driver, lambda d: target.exists() and target.stat().st_size > 1000, 30, f"download of {name}")
    head = target.read_bytes()[:3]
    assert head == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0), head

    driver.save_screenshot(str(artifacts_dir / "studio.png"))

    # History survives a reload and replays.
    driver.refresh()
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), 30, "reload")
    items = driver.find_elements("css selector", "#history-list li")
    assert items, "history is empty after reload"
    assert mix in items[0].text and TEXT[:30] in items[0].text
    assert Select(_by_id(driver, "voice-picker")).first_selected_option.text == "Mix of 2 voices"
    items[0].find_element("xpath", ".//button[text()='Play']").click()
    _wait(
        driver,
        lambda d: d.execute_script(
            "const a = document.getElementById('audio'); return Number.isFinite(a.duration) && a.duration > 0"
        ),
        30,
        "the history entry to load",
    )
    _wait(driver, lambda d: _by_id(d, "waveform").get_attribute("data-drawn") == "true", 30, "the waveform")
    # Settings survive the reload too.
    assert _by_id(driver, "script").get_attribute("value") == TEXT
    assert _by_id(driver, "mix-string").get_attribute("value") == mix


def test_wav_generation_and_history_delete(browser, server_url):
    from selenium.webdriver.common.keys import Keys

    driver = _open(browser, server_url)
    _set_script(driver, "A short test in WAV.")
    driver.find_element("css selector", "input[name=format][value=wav]").click()
    before = len(driver.find_elements("css selector", "#history-list li"))
    _by_id(driver, "script").send_keys(Keys.CONTROL, Keys.ENTER)  # the keyboard shortcut
    _wait_generated(driver, "a WAV generation")
    assert not _error_text(driver), _error_text(driver)
    assert _by_id(driver, "download").get_attribute("download").endswith(".wav")
    items = driver.find_elements("css selector", "#history-list li")
    assert len(items) == before + 1
    assert "WAV" in items[0].text
    items[0].find_element("xpath", ".//button[text()='Delete']").click()
    _wait(driver, lambda d: len(d.find_elements("css selector", "#history-list li")) == before, 10, "delete")


def test_api_errors_are_readable(browser, server_url):
    from selenium.webdriver.common.keys import Keys

    driver = _open(browser, server_url)
    _set_script(driver, "This voice does not exist.")
    mix = _by_id(driver, "mix-string")
    mix.send_keys(Keys.CONTROL, "a")
    mix.send_keys("af_heart(50)+zz_nobody(50)\n")
    assert "sent exactly as typed" in _by_id(driver, "mix-status").text
    _by_id(driver, "generate").click()
    _wait(driver, lambda d: _error_text(d), 60, "an API error message")
    text = _error_text(driver)
    assert "zz_nobody" in text and "HTTP 4" in text, text
    assert "{" not in text, f"raw JSON shown: {text}"
    # Back to a valid mix.
    mix.send_keys(Keys.CONTROL, "a")
    mix.send_keys("af_heart\n")
    assert mix.get_attribute("value") == "af_heart"


def test_cancel_a_long_generation(browser, server_url):
    driver = _open(browser, server_url)
    sentence = "The quick brown fox jumps over the lazy dog while the studio keeps streaming audio. "
    long_text = sentence * 30  # over max_unstreamed_chars: streamed
    driver.execute_script(
        "const t = document.getElementById('script'); t.value = arguments[0];"
        "t.dispatchEvent(new Event('input'));",
        long_text,
    )
    driver.find_element("css selector", "input[name=format][value=mp3]").click()
    before = len(driver.find_elements("css selector", "#history-list li"))
    _by_id(driver, "generate").click()
    _wait(driver, lambda d: _by_id(d, "cancel").is_displayed(), 10, "the cancel button")
    time.sleep(1.0)
    _by_id(driver, "cancel").click()
    _wait(driver, lambda d: _by_id(d, "generate").is_enabled(), 30, "the cancellation")
    assert _by_id(driver, "gen-status").text == "Cancelled."
    assert not _error_text(driver)
    assert len(driver.find_elements("css selector", "#history-list li")) == before


def test_phone_width_has_no_horizontal_scroll(browser, server_url, artifacts_dir):
    driver = browser.driver
    driver.set_window_size(390, 844)
    try:
        _open(browser, server_url)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"page is {overflow}px wider than a phone screen"
        for id_ in ("script", "voice-picker", "generate", "play", "download"):
            rect = _by_id(driver, id_).rect
            assert rect["x"] >= 0 and rect["x"] + rect["width"] <= 390 + 1, (id_, rect)
        driver.save_screenshot(str(artifacts_dir / "studio-phone.png"))
    finally:
        driver.set_window_size(1366, 1000)


def test_controls_are_labelled(browser, server_url):
    driver = _open(browser, server_url)
    unlabelled = driver.execute_script(
        """
        const bad = [];
        for (const el of document.querySelectorAll('input, select, textarea, button, canvas[tabindex]')) {
          if (el.type === 'hidden') continue;
          const named = (el.labels && el.labels.length) || el.getAttribute('aria-label') ||
            el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim());
          if (!named) bad.push(el.outerHTML.slice(0, 80));
        }
        return bad;
        """
    )
    assert unlabelled == []


def test_api_key_is_asked_for_and_used(browser, keyed_server_url, api_key):
    driver = browser.driver
    driver.get(f"{keyed_server_url}/web/")
    _wait(driver, lambda d: _error_text(d), 30, "the missing-key message")
    assert "API key" in _error_text(driver) and "401" in _error_text(driver)
    assert _by_id(driver, "api-key-box").get_attribute("open") is not None
    key = _by_id(driver, "api-key")
    key.send_keys(api_key, "\n")
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), 30, "voices")
    assert not _error_text(driver)
    _set_script(driver, "Keyed.")
    _by_id(driver, "generate").click()
    _wait_generated(driver, "a generation")
    assert not _error_text(driver), _error_text(driver)
    driver.execute_script("localStorage.removeItem('kokoro-studio-api-key')")


SPY = """
window.__speech = [];
const realFetch = window.fetch;
window.fetch = (url, init) => {
  if (String(url).endsWith('/v1/audio/speech')) window.__speech.push(JSON.parse(init.body));
  return realFetch(url, init);
};
"""


def _generate(driver, what):
    _by_id(driver, "generate").click()
    _wait_generated(driver, what)
    assert not _error_text(driver), _error_text(driver)


def test_the_picked_voice_is_what_speaks(browser, server_url):
    """The Voice picker shows the voice in use, and picking one makes it the voice sent (no blend)."""
    from selenium.webdriver.support.ui import Select

    driver = _open(browser, server_url)
    driver.execute_script("localStorage.clear()")
    driver.refresh()
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), 30, "reload")
    picker = Select(_by_id(driver, "voice-picker"))
    assert picker.first_selected_option.get_attribute("value") == "af_heart"  # not the first option (Alloy)
    assert picker.first_selected_option.text.startswith("Heart")
    picker.select_by_value("bm_george")
    assert _by_id(driver, "mix-string").get_attribute("value") == "bm_george"
    assert len(driver.find_elements("css selector", "#mix-list li")) == 1  # no 50/50 blend
    driver.execute_script(SPY)
    _set_script(driver, "George speaks now.")
    driver.find_element("css selector", "input[name=format][value=wav]").click()
    _generate(driver, "George's generation")
    sent = driver.execute_script("return window.__speech")
    assert [b["voice"] for b in sent] == ["bm_george"], sent
    assert "bm_george" in driver.find_elements("css selector", "#history-list li")[0].text


def test_all_formats_and_the_api_speed_range_are_offered(browser, server_url):
    driver = _open(browser, server_url)
    formats = driver.execute_script(
        "return [...document.querySelectorAll('input[name=format]')].map(r => r.value)"
    )
    assert sorted(formats) == sorted(["mp3", "opus", "aac", "flac", "wav", "pcm"])
    speed = _by_id(driver, "speed")
    assert float(speed.get_attribute("min")) == 0.25 and float(speed.get_attribute("max")) == 4.0


@pytest.mark.parametrize("fmt", ["opus", "aac", "flac", "pcm"])
def test_each_format_plays_and_downloads(browser, server_url, fmt):
    driver = _open(browser, server_url)
    _set_script(driver, f"This is {fmt}.")
    driver.find_element("css selector", f"input[name=format][value={fmt}]").click()
    _generate(driver, f"a {fmt} generation")
    assert _by_id(driver, "download").get_attribute("download").endswith(f".{fmt}")
    duration = driver.execute_script("return document.getElementById('audio').duration")
    assert 0.5 < duration < 10, duration


def test_a_failed_generation_keeps_the_last_audio(browser, server_url):
    from selenium.webdriver.common.keys import Keys

    driver = _open(browser, server_url)
    _set_script(driver, "Keep me.")
    driver.find_element("css selector", "input[name=format][value=wav]").click()
    _generate(driver, "a first generation")
    src = driver.execute_script("return document.getElementById('audio').src")
    mix = _by_id(driver, "mix-string")
    mix.send_keys(Keys.CONTROL, "a")
    mix.send_keys("zz_nobody\n")
    _by_id(driver, "generate").click()
    _wait(driver, lambda d: _error_text(d), 60, "the error")
    assert "zz_nobody" in _error_text(driver)
    assert driver.execute_script("return document.getElementById('audio').src") == src
    assert _by_id(driver, "download").get_attribute("aria-disabled") == "false"
    mix.send_keys(Keys.CONTROL, "a")
    mix.send_keys("af_heart\n")
