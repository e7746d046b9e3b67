"""The explorer in a real headless Chromium against a live `memory-service serve`: every page,
the paging, the conditional writes, the deletes, and stored content that tries to run.

Screenshots are kept as artifacts in $MEMORY_TEST_SCREENSHOTS (default: a folder under the system
temp dir)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from memory_service.http.ui import CSP
from tests.support.browser import browser_available, chromium
from tests.support.live import ADMIN, new_workspace
from tests.support.server import LiveServer
from tests.support.ui import Seed, Ui, png

pytestmark = pytest.mark.skipif(
    not browser_available() and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them; CI never skips)",
)


@pytest.fixture(scope="module")
def live(live_server: LiveServer) -> LiveServer:
    """One live server per database kind for the whole module (each test takes a fresh
    workspace on it)."""
    return live_server


@pytest.fixture(scope="module")
def ui(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        # Copy buttons write to the clipboard: allowed for this origin, as a user would allow it.
        driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"origin": live.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
        )
        yield Ui(driver, live.url)
    finally:
        driver.quit()


@pytest.fixture
def workspace(live: LiveServer) -> tuple[str, str, Seed]:
    """A fresh workspace: (its key, its name, a seeder on its key)."""
    key = new_workspace(live, "ui")
    seed = Seed(live.url, key)
    return key, seed.get("/api/usage")["workspace"], seed


def counts(ui: Ui) -> dict[str, str]:
    ui.find("#counts")
    return {
        dt.text: dd.text for dt, dd in zip(ui.all("#counts dt"), ui.all("#counts dd"), strict=True)
    }


def table_rows(ui: Ui, container: str) -> list[list[str]]:
    # Read in one go: the table may be re-rendered between two reads of its cells.
    return ui.js(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(tr => [...tr.cells].map(td => td.innerText.trim()))",
        f"{container} tbody tr",
    )


def column(ui: Ui, container: str, index: int) -> list[str]:
    return [row[index] for row in table_rows(ui, container)]


def test_sign_in_overview_and_sign_out(ui: Ui, workspace) -> None:
    key, name, seed = workspace
    seed.add("c1", "chat", ["one", "two", "three"], blockName="Support")
    seed.add("c2", "notes", ["four", "five"])
    seed.put("settings/theme", b"dark", "text/plain")
    seed.put("cursor", b"42", "text/plain")
    ui.open()
    ui.find("#api-key").send_keys("msk_not-a-key")
    ui.find("#sign-in-form button").click()
    assert "not accepted" in ui.wait_text("#sign-in-error", "not accepted")
    assert ui.js("return sessionStorage.length") == 0

    ui.sign_in(key, name)
    assert counts(ui) == {
        "Memories": "2",
        "Messages": "5",
        "Key-value keys": "2",
        "Named blocks": "1",
    }
    usage = seed.get("/api/usage")
    bar = ui.find("#usage-bar")
    assert int(bar.get_attribute("aria-valuenow")) == usage["used"]
    assert int(bar.get_attribute("aria-valuemax")) == usage["quota"]
    assert f"{usage['used']:,} of {usage['quota']:,} bytes" in ui.text("#usage-text")
    ui.shot("overview")
    # The key is in this tab's sessionStorage only: not in the URL, a cookie or localStorage.
    assert ui.js("return sessionStorage.getItem('memory-service.key')") == key
    assert ui.js("return document.cookie") == ""
    assert ui.js("return localStorage.length") == 0
    assert key not in ui.driver.current_url

    ui.find("#sign-out").click()
    ui.find("#api-key")
    assert ui.js("return sessionStorage.length") == 0
    assert not ui.find("#sign-in").get_attribute("hidden")
    assert ui.js("return document.getElementById('nav').hidden") is True
    assert ui.js("return document.getElementById('view').childElementCount") == 0
    ui.go("#/memories")  # no key, no data: the sign-in stays
    ui.find("#api-key")
    assert ui.js("return document.getElementById('view').childElementCount") == 0


def test_memories_table_filters_exactly_and_pages(ui: Ui, workspace) -> None:
    key, name, seed = workspace
    for i in range(60):
        seed.add(f"user-{i:02d}", "chat", [f"hello {i}"], blockName="Chat bot")
    seed.add("user_%", "chat", ["wild"])  # '%' and '_' are ordinary characters
    seed.add("user-07", "notes", ["a", "b", "c"])
    ui.sign_in(key, name)
    ui.go("#/memories")
    ui.heading("Memories")
    ui.wait(lambda: len(ui.all("#memory-results tbody tr")) == 50)
    first_page = table_rows(ui, "#memory-results")
    assert first_page[0][:4] == ["user-00", "chat", "Chat bot", "1"]
    ui.find(".next-page").click()
    ui.wait(lambda: len(ui.all("#memory-results tbody tr")) == 12)
    assert ui.text(".page-no") == "Page 2"
    assert ui.all(".next-page")[0].get_attribute("disabled") is not None
    second = table_rows(ui, "#memory-results")
    assert [r[0] for r in second] == [f"user-{i}" for i in range(50, 60)] + ["user_%", "user-07"]
    ui.find(".pager button").click()  # First page
    ui.wait(lambda: table_rows(ui, "#memory-results") == first_page)

    ui.find("#filter-conversationId").send_keys("user_%")
    ui.find("#filter-conversationId").send_keys(Keys.ENTER)
    ui.wait(
        lambda: table_rows(ui, "#memory-results") and len(ui.all("#memory-results tbody tr")) == 1
    )
    assert table_rows(ui, "#memory-results")[0][:4] == ["user_%", "chat", "Chat bot", "1"]

    ui.go("#/memories?conversationId=user-07")
    ui.wait(lambda: len(ui.all("#memory-results tbody tr")) == 2)
    assert [r[:4] for r in table_rows(ui, "#memory-results")] == [
        ["user-07", "chat", "Chat bot", "1"],
        ["user-07", "notes", "none", "3"],
    ]
    ui.go("#/memories?blockName=Chat%20bot&conversationId=user-07")
    ui.wait(lambda: len(ui.all("#memory-results tbody tr")) == 1)
    ui.go("#/memories?conversationId=user-0")  # exact, never a prefix
    ui.wait_text("#memory-results", "No memory matches.")
    ui.shot("memories-filtered")


def test_memory_of_2500_messages_pages_back_to_the_first(ui: Ui, workspace) -> None:
    key, name, seed = workspace
    contents = [f"message {i}" for i in range(2500)]
    contents[2499] = "A long answer.\n" + "\n".join(f"line {n}" for n in range(40))
    seed.add("long-talk", "chat", contents, blockName="Support bot")
    ui.sign_in(key, name)
    ui.go("#/memories")
    ui.find("#memory-results a").click()
    ui.heading("Memory")
    assert ui.wait_text("#message-range", "2,500") == "Showing messages 2,301–2,500 of 2,500"
    assert ui.text("#memory-count") == "2,500"
    items = ui.all("#messages li")
    assert len(items) == 200
    # Newest page first, in order; roles shown apart.
    assert ui.js(
        "return [...document.querySelectorAll('#messages li')].map(li => +li.dataset.seq)"
    ) == list(range(2300, 2500))
    assert items[0].find_element(By.CSS_SELECTOR, ".role").text.lower() == "user"
    assert "role-assistant" in items[1].get_attribute("class")
    # The long last message starts collapsed; it opens and closes.
    last = items[-1]
    toggle = last.find_element(By.CSS_SELECTOR, ".toggle")
    content = last.find_element(By.CSS_SELECTOR, ".content")
    assert "collapsed" in content.get_attribute("class")
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.click()
    assert "collapsed" not in content.get_attribute("class")
    assert toggle.get_attribute("aria-expanded") == "true"
    assert ui.js("return arguments[0].textContent", content) == contents[2499]
    # Copy puts the message's exact text on the clipboard.
    last.find_element(By.CSS_SELECTOR, ".copy").click()
    ui.status("Copied message 2,500")
    clip = ui.driver.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('error ' + e))"
    )
    assert clip == contents[2499]
    ui.js("window.scrollTo(0, 0)")
    ui.shot("memory-view")

    clicks = 0
    while not ui.all("#first-message"):
        ui.find("#older-messages").click()
        clicks += 1
        ui.wait(lambda n=clicks: len(ui.all("#messages li")) == min(2500, 200 * (n + 1)))
    assert clicks == 12
    assert ui.text("#message-range") == "Showing messages 1–2,500 of 2,500"
    texts = ui.js(
        "return [...document.querySelectorAll('#messages li .content')].map(e => e.textContent)"
    )
    assert texts == contents
    seqs = ui.js("return [...document.querySelectorAll('#messages li')].map(li => +li.dataset.seq)")
    assert seqs == list(range(2500))
    assert ui.text("#first-message") == "Start of the conversation."


def test_rename_a_block(ui: Ui, workspace) -> None:
    key, name, seed = workspace
    seed.add("c1", "support-v2", ["hi"], blockName="Old name")
    ui.sign_in(key, name)
    ui.go("#/blocks")
    ui.heading("Blocks")
    ui.wait(lambda: len(ui.all("#block-results tbody tr")) == 1)
    assert table_rows(ui, "#block-results")[0][:2] == ["support-v2", "Old name"]
    ui.find(".rename-button").click()
    field = ui.find(".rename input")
    assert ui.js("return document.activeElement") == field
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys("Support <b>bot</b> v2")
    field.send_keys(Keys.ENTER)
    ui.wait(lambda: column(ui, "#block-results", 1) == ["Support <b>bot</b> v2"])
    ui.status("is now named Support <b>bot</b> v2")
    memory = seed.get("/api/memory", blockId="support-v2")["memories"][0]
    assert memory["blockName"] == "Support <b>bot</b> v2"
    ui.go("#/memories")
    ui.wait(lambda: column(ui, "#memory-results", 2) == ["Support <b>bot</b> v2"])


def set_value(
    ui: Ui, key: str, *, text: str | None = None, file: str | None = None, content_type: str
) -> None:
    ui.go("#/kv")
    ui.heading("Key-value")
    form = ui.find("#new-value")
    form.find_element(By.NAME, "key").clear()
    form.find_element(By.NAME, "key").send_keys(key)
    if text is not None:
        area = form.find_element(By.NAME, "text")
        ui.js("arguments[0].value = arguments[1]", area, text)
    if file is not None:
        form.find_element(By.NAME, "file").send_keys(file)
    kind = form.find_element(By.NAME, "contentType")
    kind.clear()
    kind.send_keys(content_type)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    ui.wait(lambda: ui.js("return document.getElementById('kv-key')?.textContent") == key)


def test_set_and_preview_text_json_png_and_bytes(ui: Ui, workspace, tmp_path) -> None:
    key, name, seed = workspace
    ui.sign_in(key, name)
    set_value(
        ui, "notes/hello.txt", text="Hello,\nworld ✓", content_type="text/plain; charset=utf-8"
    )
    assert ui.text("#preview-kind") == "Text"
    assert ui.js("return document.getElementById('text-preview').textContent") == "Hello,\nworld ✓"
    stored = seed.value("notes/hello.txt")
    assert stored.content == "Hello,\nworld ✓".encode()
    assert stored.headers["content-type"] == "text/plain; charset=utf-8"

    set_value(
        ui,
        "config.json",
        text='{"model":"small","tags":["a","b"],"n":3}',
        content_type="application/json",
    )
    assert ui.text("#preview-kind") == "JSON"
    pretty = ui.js("return document.getElementById('text-preview').textContent")
    assert pretty == json.dumps({"model": "small", "tags": ["a", "b"], "n": 3}, indent=2)
    ui.shot("kv-json")

    image = png(48, 24, (200, 40, 40))
    path = tmp_path / "red.png"
    path.write_bytes(image)
    set_value(ui, "images/red.png", file=str(path), content_type="image/png")
    img = ui.find("#image-preview")
    ui.wait(lambda: ui.js("return arguments[0].complete && arguments[0].naturalWidth", img) == 48)
    assert ui.js("return arguments[0].naturalHeight", img) == 24
    assert img.get_attribute("src").startswith("blob:")
    assert seed.value("images/red.png").content == image
    ui.shot("kv-png")
    # Saving the empty text box of a picture would wipe it: refused, nothing sent.
    ui.find("#replace-value button[type=submit]").click()
    ui.wait_text("#alert", "This value is not text")
    assert seed.value("images/red.png").content == image

    raw = bytes(range(256))
    seed.put("blob.bin", raw, "application/octet-stream")
    ui.go("#/kv-value?key=blob.bin")
    ui.wait(lambda: ui.all("#hex-preview"))
    dump = ui.js("return document.getElementById('hex-preview').textContent").split("\n")
    assert dump[0] == "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  ................"
    assert dump[2] == "00000020  20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f   !\"#$%&'()*+,-./"
    assert len(dump) == 16
    download = ui.find("#download")
    assert download.get_attribute("href").startswith("blob:")
    # Download: the very bytes, as a file (plain bytes, never rendered by the page).
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    ui.driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    assert download.get_attribute("download") == "blob.bin"
    download.click()
    ui.wait(
        lambda: (downloads / "blob.bin").exists() and (downloads / "blob.bin").read_bytes() == raw
    )

    # A large value waits for the user's word before the page loads it.
    big = b"\x00\xff" * (3 * 1024 * 1024)
    seed.put("big.bin", big, "application/octet-stream")
    ui.go("#/kv-value?key=big.bin")
    ui.wait_text("#view", "it is loaded only when you ask")
    assert ui.all("#hex-preview") == []
    ui.find("#load-value").click()
    ui.wait(lambda: ui.all("#hex-preview"))
    assert ui.js("return document.getElementById('hex-preview').textContent").startswith(
        "00000000  00 ff 00 ff"
    )
    assert ui.text("#preview-kind") == "Bytes, first 16,384 as hex"
    seed.client.delete("/api/kv/big%2Ebin")

    ui.go("#/kv")  # the list: keys in byte order, with size, type and version
    ui.wait(lambda: len(ui.all("#kv-results tbody tr")) == 4)
    rows = table_rows(ui, "#kv-results")
    assert [r[0] for r in rows] == ["blob.bin", "config.json", "images/red.png", "notes/hello.txt"]
    assert rows[0][1:3] == ["256 B", "application/octet-stream"]
    ui.go("#/kv?prefix=images%2F")
    ui.wait(lambda: [r[0] for r in table_rows(ui, "#kv-results")] == ["images/red.png"])


def test_a_stale_page_never_overwrites_a_newer_value(ui: Ui, workspace) -> None:
    key, name, seed = workspace
    seed.put("shared", b"first", "text/plain")
    ui.sign_in(key, name)
    ui.go("#/kv-value?key=shared")
    ui.heading("Value")
    shown_version = ui.text("#kv-version")
    newer = seed.put("shared", b"written elsewhere", "text/plain")  # behind the page's back
    area = ui.find("#replace-value textarea")
    ui.js("arguments[0].value = 'from the stale page'", area)
    ui.find("#replace-value button[type=submit]").click()
    notice = ui.wait_text("#stale", "changed or deleted since this page loaded it")
    assert "nothing was overwritten" in notice
    assert seed.value("shared").content == b"written elsewhere"
    ui.shot("kv-stale")
    ui.find("#stale-reload").click()
    ui.wait(lambda: ui.text("#kv-version") == newer["etag"])
    assert ui.text("#kv-version") != shown_version
    assert (
        ui.js("return document.getElementById('text-preview').textContent") == "written elsewhere"
    )
    area = ui.find("#replace-value textarea")
    ui.js("arguments[0].value = 'from the fresh page'", area)
    ui.find("#replace-value button[type=submit]").click()
    ui.status("Saved shared.")
    ui.wait(
        lambda: (
            ui.js("return document.getElementById('text-preview')?.textContent")
            == "from the fresh page"
        )
    )
    assert seed.value("shared").content == b"from the fresh page"
    # A delete from a stale page is refused the same way.
    seed.put("shared", b"again elsewhere", "text/plain")
    ui.find("#delete-value").click()
    ui.find("#confirm-ok").click()
    ui.wait_text("#stale", "changed or deleted")
    assert seed.value("shared").content == b"again elsewhere"


def test_delete_shows_the_dry_run_count_first(ui: Ui, workspace) -> None:
    key, name, seed = workspace
    for conv, n in (("a", 10), ("b", 15), ("c", 16)):
        seed.add(conv, "doomed", [f"{conv}{i}" for i in range(n)])
    seed.add("a", "kept", ["stay"])
    ui.sign_in(key, name)
    ui.go("#/memories?blockId=doomed")
    ui.wait(lambda: len(ui.all("#memory-results tbody tr")) == 3)
    ui.find("#delete-matching").click()
    text = ui.wait_text("#confirm-text", "This deletes")
    assert text.startswith("This deletes 3 memories, 41 messages (")
    ui.shot("delete-confirm")
    ui.find("#confirm-cancel").click()
    ui.status("Nothing was deleted.")
    assert len(seed.get("/api/memory", blockId="doomed")["memories"]) == 3
    ui.find("#delete-matching").click()
    ui.wait_text("#confirm-text", "This deletes 3 memories, 41 messages")
    ui.find("#confirm-ok").click()
    ui.status("Deleted 3 memories")
    ui.wait_text("#memory-results", "No memory matches.")
    assert seed.get("/api/memory", blockId="doomed")["memories"] == []
    # One memory, from its own view.
    ui.go("#/memory?conversationId=a&blockId=kept")
    ui.find("#delete-memory").click()
    assert ui.wait_text("#confirm-text", "This deletes").startswith(
        "This deletes 1 memory, 1 message ("
    )
    ui.find("#confirm-ok").click()
    ui.heading("Memories")
    ui.status("Deleted 1 memory")
    assert seed.get("/api/stats")["memories"] == 0


PAYLOADS = [
    "<script>window.__xss = 'script'</script>",
    "<img src=x onerror=\"window.__xss = 'img'\">",
    "<a href=\"javascript:window.__xss = 'link'\">click me</a>",
    "javascript:window.__xss = 'bare-link'",
    '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__xss = \'svg\'">'
    "<script>window.__xss = 'svg-script'</script></svg>",
    "<iframe src=\"javascript:parent.__xss = 'iframe'\"></iframe>",
    '"><style>body{display:none}</style>',
]
HOSTILE_TAGS = (
    "script, img, svg, iframe, object, embed, style, link, a[href^='javascript'], form[action]"
)


def test_stored_content_is_only_ever_text(ui: Ui, workspace) -> None:
    key, name, seed = workspace
    for i, payload in enumerate(PAYLOADS):
        seed.add(payload, payload, [payload, payload + " tail"], blockName=payload)
        seed.put(
            f"x/{i}-{payload[:20]}",
            payload.encode(),
            ["text/html", "image/svg+xml", "text/plain"][i % 3],
        )
    svg = PAYLOADS[4].encode()
    seed.put("x/svg-image", svg, "image/svg+xml")
    ui.sign_in(key, name)
    # Anything that tried to run would set window.__xss, open an alert, or trip the CSP.
    ui.js(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.violatedDirective));"
        "window.alert = () => { window.__xss = 'alert'; };"
    )

    def assert_inert() -> None:
        assert ui.js("return window.__xss === undefined"), ui.js("return window.__xss")
        assert ui.js("return window.__violations") == []
        assert not ui.alert_open()
        injected = ui.js(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.outerHTML)",
            f"#view :is({HOSTILE_TAGS})",
        )
        assert injected == []
        assert ui.js("return getComputedStyle(document.body).display") != "none"

    ui.go("#/memories")
    ui.wait(lambda: len(ui.all("#memory-results tbody tr")) == len(PAYLOADS))
    rows = table_rows(ui, "#memory-results")
    assert [r[0] for r in rows] == PAYLOADS
    assert [r[1] for r in rows] == PAYLOADS
    assert [r[2] for r in rows] == PAYLOADS
    # The links to each memory stay inside the explorer, whatever the ids hold.
    hrefs = ui.js(
        "return [...document.querySelectorAll('#memory-results a')]"
        ".map(a => a.getAttribute('href'))"
    )
    assert all(h.startswith("#/memory?") for h in hrefs)
    assert_inert()
    for link in range(len(PAYLOADS)):
        ui.all("#memory-results a")[link].click()
        ui.heading("Memory")
        ui.wait(lambda: len(ui.all("#messages li")) == 2)
        texts = ui.js(
            "return [...document.querySelectorAll('#messages .content')].map(e => e.textContent)"
        )
        assert texts == [PAYLOADS[link], PAYLOADS[link] + " tail"]
        assert ui.text("#memory-conversation") == PAYLOADS[link]
        assert_inert()
        ui.go("#/memories")
        ui.wait(lambda: len(ui.all("#memory-results tbody tr")) == len(PAYLOADS))
    ui.go("#/blocks")
    ui.wait(lambda: len(ui.all("#block-results tbody tr")) == len(PAYLOADS))
    assert sorted(r[1] for r in table_rows(ui, "#block-results")) == sorted(PAYLOADS)
    assert_inert()
    ui.go("#/kv")
    ui.wait(lambda: len(ui.all("#kv-results tbody tr")) == len(PAYLOADS) + 1)
    keys = [r[0] for r in table_rows(ui, "#kv-results")]
    for key_name in keys:
        ui.go("#/kv?prefix=x%2F")
        ui.wait(lambda: len(ui.all("#kv-results tbody tr")) == len(PAYLOADS) + 1)
        link = next(a for a in ui.all("#kv-results a") if a.text == key_name)
        link.click()
        ui.wait(
            lambda k=key_name: ui.js("return document.getElementById('kv-key')?.textContent") == k
        )
        shown = ui.js("return document.getElementById('text-preview')?.textContent")
        stored = seed.value(key_name)
        assert shown == stored.content.decode()
        assert_inert()
    ui.shot("xss-kv")


def test_workspace_b_finds_nothing_of_a(ui: Ui, workspace, live: LiveServer) -> None:
    key_a, _name_a, seed_a = workspace
    seed_a.add("a-secret-talk", "a-block", ["the secret of A"], blockName="A-secret-block")
    seed_a.put("a-secret-key", b"A's secret value", "text/plain")
    key_b = new_workspace(live, "ui-b")
    name_b = Seed(live.url, key_b).get("/api/usage")["workspace"]
    ui.sign_in(key_b, name_b)
    assert counts(ui) == {
        "Memories": "0",
        "Messages": "0",
        "Key-value keys": "0",
        "Named blocks": "0",
    }
    ui.go("#/memories")
    ui.wait_text("#memory-results", "No memories yet.")
    ui.go("#/memories?conversationId=a-secret-talk")
    ui.wait_text("#memory-results", "No memory matches.")
    ui.go("#/memory?conversationId=a-secret-talk&blockId=a-block")
    ui.wait(lambda: not ui.js("return document.getElementById('alert').hidden"))
    assert "the secret of A" not in ui.driver.page_source
    ui.go("#/blocks")
    ui.wait_text("#block-results", "No block has a name yet.")
    ui.go("#/kv")
    ui.wait_text("#kv-results", "No keys yet.")
    ui.go("#/kv-value?key=a-secret-key")
    ui.wait_text("#view", "No value is stored under")
    page = ui.driver.page_source
    for secret in ("the secret of A", "A-secret-block", "A's secret value"):
        assert secret not in page


def test_security_headers_and_policy_in_force(ui: Ui, live: LiveServer, workspace) -> None:
    for path in ("/ui", "/ui/app.js", "/ui/style.css", "/ui/kv.js"):
        r = httpx.get(live.url + path)
        assert r.status_code == 200
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    key, name, _seed = workspace
    ui.sign_in(key, name)
    # The policy is in force in the browser: an inline script added to the page never runs.
    ui.js(
        "const s = document.createElement('script'); s.textContent = 'window.__inline = 1';"
        "document.body.append(s);"
    )
    assert ui.js("return window.__inline") is None
    logs = [e["message"] for e in ui.driver.get_log("browser")]
    assert any("Content Security Policy" in m for m in logs)


def test_keyboard_only_and_narrow_window(ui: Ui, workspace) -> None:
    key, name, seed = workspace
    seed.add("kb-talk", "chat", ["typed by keyboard", "answered"], blockName="Keys")
    ui.open()
    # The key field has focus at once; Enter signs in.
    assert ui.js("return document.activeElement.id") == "api-key"
    ui.driver.switch_to.active_element.send_keys(key, Keys.ENTER)
    ui.heading("Overview")
    # Every field has a label.
    unlabelled = ui.js(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label'))"
        ".map(e => e.outerHTML)"
    )
    assert unlabelled == []

    def tab_to(text: str) -> None:
        for _ in range(40):
            ui.driver.switch_to.active_element.send_keys(Keys.TAB)
            if ui.driver.switch_to.active_element.text == text:
                return
        raise AssertionError(f"Tab never reached {text!r}")

    tab_to("Memories")
    ui.driver.switch_to.active_element.send_keys(Keys.ENTER)
    ui.heading("Memories")
    tab_to("kb-talk")
    ui.driver.switch_to.active_element.send_keys(Keys.ENTER)
    ui.heading("Memory")
    ui.wait(lambda: len(ui.all("#messages li")) == 2)

    ui.driver.set_window_size(390, 844)
    try:
        ui.go("#/memories")
        ui.wait(lambda: len(ui.all("#memory-results tbody tr")) == 1)
        # Nothing wider than the window: tables become stacked, labelled cards.
        assert ui.js("return document.documentElement.scrollWidth <= window.innerWidth")
        assert (
            ui.js(
                "return getComputedStyle("
                "document.querySelector('#memory-results td'), '::before').content"
            )
            == '"Conversation"'
        )
        ui.shot("narrow-memories")
        ui.go("#/memory?conversationId=kb-talk&blockId=chat")
        ui.wait(lambda: len(ui.all("#messages li")) == 2)
        assert ui.js("return document.documentElement.scrollWidth <= window.innerWidth")
        ui.shot("narrow-memory")
    finally:
        ui.driver.set_window_size(1280, 900)


def test_a_key_that_stops_working_signs_the_tab_out(ui: Ui, workspace, live: LiveServer) -> None:
    key, name, seed = workspace
    seed.add("soon-gone", "chat", ["bye"])
    ui.sign_in(key, name)
    r = httpx.delete(f"{live.url}/admin/workspaces/{name}", headers=ADMIN)
    assert r.status_code == 200
    ui.find("#nav a[data-section=memories]").click()
    ui.wait_text("#sign-in-error", "Your key is no longer accepted")
    assert ui.js("return sessionStorage.length") == 0
    assert ui.js("return document.getElementById('view').childElementCount") == 0
    assert ui.js("return document.getElementById('alert').hidden") is True
