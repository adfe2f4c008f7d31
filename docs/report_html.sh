#!/usr/bin/env bash
# Checks in a real browser that a study's static report page, reports/<study>/index.html,
# works as a reader uses it, and saves what it shows to docs/report_html.png.
#
# Usage (from the repository root; needs Debian's `chromium` package and python3):
#   bash docs/report_html.sh [reports/<study>/index.html] [out.png]
#
# It opens the page from disk in headless Chromium, driven over the DevTools protocol through
# a pipe (--remote-debugging-pipe: no port, no websocket package), and fails when the page
# logs a console error or throws, when any image does not load, or when it requests anything
# but local files. Then it clicks the heat map's first architecture header and checks that
# the datasets are sorted by that architecture's skill, best first, clicks the first dataset
# of the sorted table and checks that its section opened with its figures loaded. Screenshots:
# the page as it opens (out.png, default docs/report_html.png) and after the clicks
# (out_open.png). Nothing else is written; Chromium's profile lives in a temporary folder.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
page=${1:-$root/reports/panel/index.html}
out=${2:-$root/docs/report_html.png}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v chromium > /dev/null || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 2; }
[ -f "$page" ] || { echo "no such page: $page" >&2; exit 2; }

timeout 180 python3 - "$page" "$out" "$work" <<'EOF'
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

page, out, work = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), Path(sys.argv[3])
opened = out.with_name(out.stem + "_open" + out.suffix)

# Chromium reads commands from fd 3 and writes replies to fd 4, each message ending in NUL.
to_browser_r, to_browser_w = os.pipe()
from_browser_r, from_browser_w = os.pipe()
flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={work}/chromium",
         "about:blank"]
browser = subprocess.Popen(
    ["bash", "-c", f'exec 3<&{to_browser_r} 4>&{from_browser_w}; exec chromium "$@"', "chromium",
     *flags],
    pass_fds=(to_browser_r, from_browser_w), stdout=subprocess.DEVNULL,
    stderr=open(work / "chromium.log", "wb"))
os.close(to_browser_r)
os.close(from_browser_w)
send_to, read_from = os.fdopen(to_browser_w, "wb"), os.fdopen(from_browser_r, "rb")
ids, buffer, events, problems = iter(range(1, 10**6)), b"", [], []


def receive() -> dict:
    global buffer
    while b"\0" not in buffer:
        chunk = os.read(read_from.fileno(), 1 << 16)
        if not chunk:
            raise SystemExit("chromium closed the pipe; see its log:\n"
                             + (work / "chromium.log").read_text(errors="replace")[-2000:])
        buffer += chunk
    message, buffer = buffer.split(b"\0", 1)
    return json.loads(message)


def call(method: str, session: str | None = None, **params) -> dict:
    n = next(ids)
    msg = {"id": n, "method": method, "params": params}
    if session:
        msg["sessionId"] = session
    send_to.write(json.dumps(msg).encode() + b"\0")
    send_to.flush()
    while True:
        reply = receive()
        if reply.get("id") == n:
            if "error" in reply:
                raise SystemExit(f"{method}: {reply['error']}")
            return reply.get("result", {})
        watch(reply)


def watch(event: dict) -> None:
    """Every console error, uncaught exception, failed load and non-local request is a fail."""
    method, p = event.get("method", ""), event.get("params", {})
    events.append(method)
    if method == "Runtime.exceptionThrown":
        problems.append("exception: " + p["exceptionDetails"].get("text", "")
                        + " " + json.dumps(p["exceptionDetails"].get("exception", {}))[:300])
    elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        problems.append("console error: " + " ".join(str(a.get("value", a.get("description")))
                                                     for a in p.get("args", [])))
    elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
        problems.append(f"log error: {p['entry'].get('text')} {p['entry'].get('url', '')}")
    elif method == "Network.loadingFailed":
        problems.append(f"failed load: {p.get('errorText')} ({p.get('type')})")
    elif method == "Network.requestWillBeSent":
        url = p["request"]["url"]
        if not url.startswith(("file:", "data:", "about:")):
            problems.append(f"network request: {url}")


def wait_for(method: str, session: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        event = receive()
        watch(event)
        if event.get("method") == method and event.get("sessionId") == session:
            return
    raise SystemExit(f"timed out waiting for {method}")


def js(expr: str, session: str):
    r = call("Runtime.evaluate", session, expression=expr, returnByValue=True, awaitPromise=True)
    if "exceptionDetails" in r:
        raise SystemExit(f"script failed: {expr[:80]}: {r['exceptionDetails']}")
    return r["result"].get("value")


def click(selector: str, session: str) -> None:
    """A real mouse click at the element's centre, as a reader's."""
    box = js(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
        e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2]; }})()""", session)
    for kind in ("mousePressed", "mouseReleased"):
        call("Input.dispatchMouseEvent", session, type=kind, x=box[0], y=box[1], button="left",
             clickCount=1)


def screenshot(path: Path, session: str) -> None:
    data = call("Page.captureScreenshot", session, format="png")["data"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data))


def images_missing(session: str, scope: str = "document") -> list:
    return js(f"""(async () => {{
        const imgs = Array.from({scope}.querySelectorAll("img"));
        await Promise.all(imgs.map(i => i.complete ? null : new Promise(ok => {{
            i.addEventListener("load", ok); i.addEventListener("error", ok); }})));
        return imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute("src")); }})()""",
              session)


try:
    target = call("Target.createTarget", url="about:blank")["targetId"]
    s = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        call(f"{domain}.enable", s)
    call("Emulation.setDeviceMetricsOverride", s, width=1360, height=1100, deviceScaleFactor=1,
         mobile=False)
    call("Page.navigate", s, url=page.as_uri())
    wait_for("Page.loadEventFired", s)

    missing = images_missing(s)
    if missing:
        problems.append("images that did not load: " + ", ".join(missing))
    heat = js("""(() => { const t = document.getElementById("heatmap-table");
        return t ? t.tBodies[0].rows.length : -1; })()""", s)
    sections = js('document.querySelectorAll("details.dataset").length', s)
    if heat < 1 or heat != sections:
        problems.append(f"heat map rows {heat}, dataset sections {sections}")
    screenshot(out, s)

    # Sort by the first architecture: the rows' skill in that column must fall, empty cells last.
    arch = js('document.querySelector("#heatmap-table thead th:nth-child(2)").textContent', s)
    click("#heatmap-table thead th:nth-child(2)", s)
    state = js("""(() => { const t = document.getElementById("heatmap-table");
        return [t.tHead.rows[0].cells[1].getAttribute("aria-sort"),
                Array.from(t.tBodies[0].rows).map(r => r.cells[1].getAttribute("data-v"))]; })()""",
               s)
    values = [float(v) for v in state[1] if v]
    if state[0] != "descending" or values != sorted(values, reverse=True) \
            or any(state[1][len(values):]):
        problems.append(f"sorting by {arch} gave {state}")

    # Open the section of the dataset now first, from its link in the heat map.
    first = js("""document.querySelector("#heatmap-table tbody tr th a").getAttribute("href")""", s)
    click("#heatmap-table tbody tr th a", s)
    time.sleep(0.5)
    is_open = js(f"document.getElementById({json.dumps(first[1:])}).open", s)
    if not is_open:
        problems.append(f"clicking {first} in the heat map did not open its section")
    missing = images_missing(s, f"document.getElementById({json.dumps(first[1:])})")
    if missing:
        problems.append("images in the opened section that did not load: " + ", ".join(missing))
    js(f"document.getElementById({json.dumps(first[1:])}).scrollIntoView()", s)
    time.sleep(0.3)
    screenshot(opened, s)
    # The events that arrived after the last reply.
    call("Runtime.evaluate", s, expression="0")
    call("Browser.close")
    browser.wait(timeout=30)
finally:
    if browser.poll() is None:
        browser.kill()

if problems:
    print(f"{page}: {len(problems)} problem(s):", *problems, sep="\n  ", file=sys.stderr)
    raise SystemExit(1)
print(f"{page}: no console error, every image loads, nothing requested from a network; "
      f"sorted by {arch} and opened {first[1:]}. Screenshots: {out}, {opened}")
EOF
