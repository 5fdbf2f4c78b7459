#!/usr/bin/env python3
"""MyBA's web page in a real browser (Debian's Chromium through Selenium, nothing downloaded).

Starts the built `stripe-emulator` and two `myba-server`s (development sign-in, and Clerk
sign-in through a local stand-in for Clerk's browser SDK whose RS256 tokens the server
verifies), an OpenAI stand-in for the own-key path, then walks what a visitor does:

  anonymous     free tokens to zero, the out-of-tokens message, an API error with its request id,
                clearing storage gives no new tokens, notices dismiss by hand and by themselves
  transfer      development sign-in moves the anonymous remainder over, with the welcome notice
  purchase      plans with the first-purchase discount, the emulator's checkout page, Pay, and the
                balance arriving on /payment-success without a reload (the webhook comes late)
  cancel        Cancel on the checkout page: /pricing?canceled=1 says nothing was charged
  own key       the caller's OpenAI key: the ticket streams, no token is spent, the key is not
                stored by the server (not in its database, not in its log)
  clerk         sign-in through the Clerk stand-in, the server verifying real RS256 tokens
  phone         a phone-width layout with nothing wider than the screen
  keyboard      labelled controls, the sign-in dialog by keyboard

Every browser's console must stay free of errors (failed requests the journey provokes on
purpose excepted). Usage: journey.py --bin DIR [--screenshots DIR]. Prints
"browser journey: N passed, M failed" and exits non-zero on any failure. `scripts/test.sh`
runs it after the Swift tests; alone: `.venv/bin/python Tests/browser/journey.py --bin .build/debug`.
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download anything.

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standins  # noqa: E402

CHROMIUM = os.environ.get("MYBA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MYBA_CHROMEDRIVER", "/usr/bin/chromedriver")
WEBHOOK_SECRET = "whsec_browser_journey"
OWN_KEY = "sk-own-key-browser-journey-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def http_json(url, method="GET", body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


class Stack:
    """The processes of one run; stopped (process groups killed) at the end."""

    def __init__(self, bin_dir, work):
        self.bin_dir = bin_dir
        self.work = work
        self.processes = []

    def start(self, name, args, env, log):
        out = open(os.path.join(self.work, log), "wb")
        process = subprocess.Popen([os.path.join(self.bin_dir, name), *args], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def stop(self):
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def server_env(port, work, name, stripe_port):
    return {
        "PORT": str(port), "MYBA_HOST": "127.0.0.1", "MYBA_DATABASE": os.path.join(work, name + ".sqlite"),
        "MYBA_LOG_FILE": os.path.join(work, name + ".jsonl"), "MYBA_ANON_SESSIONS_PER_HOUR": "1000",
        "STRIPE_SECRET_KEY": "sk_test_browser_journey", "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}", "MYBA_MIRROR_INTERVAL_MS": "200",
    }


class Browser:
    """One Chromium with its own profile; `agent` makes its fingerprint (and so its anonymous
    session) its own."""

    def __init__(self, agent, width=1280, height=900, screenshots=None):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}",
                         f"--user-agent=Mozilla/5.0 (X11; Linux x86_64) MyBA-journey/{agent}", "--lang=en-US"]:
            options.add_argument(argument)
        if width < 500:
            # Headless windows are at least 500 px wide: a phone is emulated, as DevTools does.
            options.add_experimental_option("mobileEmulation", {
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 3.0, "touch": True},
                "userAgent": f"Mozilla/5.0 (Linux; Android 14) Mobile MyBA-journey/{agent}",
            })
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        self.screenshots = screenshots
        self.expected_failures = set()

    def open(self, url):
        self.driver.get(url)
        self.wait(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "the page to start")

    def wait(self, condition, what, timeout=15):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition)
        except Exception as error:
            raise AssertionError(f"timed out waiting for {what}; notices: {self.notices()}") from error

    def el(self, test):
        return self.driver.find_element(By.CSS_SELECTOR, f'[data-test="{test}"]')

    def balance(self):
        return self.el("balance").text

    def wait_balance(self, expected, timeout=15):
        self.wait(lambda d: self.balance() == str(expected), f"balance {expected} (shows {self.balance()!r})", timeout)

    def notices(self):
        try:
            return [n.text for n in self.driver.find_elements(By.CSS_SELECTOR, '[data-test="notice"]')]
        except Exception:
            return []

    def wait_notice(self, *fragments, timeout=15):
        def found(_):
            return next((text for text in self.notices() if all(f in text for f in fragments)), None)
        return self.wait(found, f"a notice with {fragments}", timeout)

    def generate(self, text):
        box = self.el("ticket-input")
        box.clear()
        box.send_keys(text)
        self.el("generate").click()

    def shot(self, name, top=None):
        """Saves a screenshot, scrolled so that the element with id `top` is at the top."""
        if self.screenshots:
            script = "document.getElementById(arguments[0]).scrollIntoView({block: 'start'})" if top else "window.scrollTo(0, 0)"
            self.driver.execute_script(script, top)
            self.driver.save_screenshot(os.path.join(self.screenshots, name + ".png"))

    def console_errors(self):
        """Console errors, except failed requests this journey provoked on purpose."""
        errors = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] != "SEVERE":
                continue
            message = entry["message"]
            if entry.get("source") == "network" and any(f"status of {code}" in message for code in self.expected_failures):
                continue
            errors.append(message)
        return errors

    def close(self):
        errors = self.console_errors()
        self.driver.quit()
        assert not errors, f"errors in the browser console: {errors}"


def scenario_anonymous(ctx):
    browser = Browser("anonymous", screenshots=ctx.screenshots)
    browser.expected_failures = {402}
    try:
        browser.open(ctx.dev)
        browser.wait_balance(3)
        assert "Development sign-in" in browser.driver.find_element(By.ID, "dev-banner").text
        browser.generate("As a store manager I want to export last month's orders as CSV")
        browser.wait(EC.visibility_of_element_located((By.ID, "ticket-title")), "the ticket")
        ticket = browser.el("ticket").text
        assert "Acceptance criteria" in ticket and "Priority" in ticket and "points" in ticket, ticket
        assert "MyBA" in browser.el("provider").text, browser.el("provider").text
        assert browser.driver.find_element(By.ID, "ticket-title").text.strip(), "the ticket has no title"
        browser.wait_balance(2)
        browser.shot("ticket", top="generate-form")
        # Copy as Markdown says it copied.
        browser.driver.find_element(By.ID, "copy-markdown").click()
        browser.wait_notice("Copied the ticket as Markdown")
        for remaining in (1, 0):
            browser.generate("Add a dark mode to the settings page")
            browser.wait_balance(remaining)
        browser.wait(EC.visibility_of_element_located((By.ID, "out-of-tokens")), "the out-of-tokens message")
        # One more: the server's refusal is shown with its request id, nothing is charged.
        browser.generate("One more ticket please")
        notice = browser.wait_notice("No ticket", "Request ID: req_")
        assert "no free tokens left" in notice, notice
        browser.wait_balance(0)
        browser.shot("out-of-tokens", top="generate-form")
        # Dismissed by hand...
        count = len(browser.notices())
        browser.driver.find_elements(By.CSS_SELECTOR, '[data-test="notice"] .dismiss')[-1].click()
        browser.wait(lambda d: len(browser.notices()) == count - 1, "a dismissed notice to go")
        # ... and by itself after a few seconds.
        browser.wait(lambda d: len(browser.notices()) == 0, "the notices to dismiss themselves", timeout=15)
        # Clearing storage is no way to new free tokens.
        browser.driver.execute_script("localStorage.clear(); sessionStorage.clear();")
        browser.open(ctx.dev)
        browser.wait_balance(0)
    finally:
        browser.close()


def dev_sign_in(browser, user_id):
    browser.el("sign-in").click()
    field = browser.wait(EC.visibility_of_element_located((By.ID, "dev-user-id")), "the development sign-in form")
    field.send_keys(user_id)
    field.send_keys(Keys.ENTER)


def scenario_transfer_purchase_cancel(ctx):
    browser = Browser("buyer", screenshots=ctx.screenshots)
    try:
        browser.open(ctx.dev)
        browser.wait_balance(3)
        browser.generate("Let customers reset their password by email")
        browser.wait_balance(2)
        dev_sign_in(browser, "user_browser_buyer")
        notice = browser.wait_notice("Welcome!")
        assert "6 welcome tokens" in notice and "2 free tokens" in notice, notice
        browser.wait_balance(8)
        assert browser.el("sign-out").is_displayed() and not browser.el("sign-in").is_displayed()

        # Plans, with the first-purchase discount.
        browser.driver.find_element(By.CSS_SELECTOR, 'a[href="/pricing"][data-view-link]').click()
        browser.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-test="plan-starter"]')), "the plans")
        for plan in ("plan-starter", "plan-professional", "plan-enterprise"):
            assert browser.el(plan).is_enabled(), plan
        discount = browser.driver.find_element(By.ID, "discount-note").text
        assert "20 %" in discount, discount
        assert "$4.00" in browser.driver.find_element(By.ID, "plans").text, browser.driver.find_element(By.ID, "plans").text
        browser.shot("pricing")

        # Cancel first: nothing charged.
        browser.el("plan-professional").click()
        browser.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, '[data-test="emulator-cancel"]')), "the checkout page")
        browser.el("emulator-cancel").click()
        browser.wait(lambda d: "/pricing?canceled=1" in d.current_url, "the return to /pricing?canceled=1")
        browser.wait(EC.visibility_of_element_located((By.ID, "canceled")), "the canceled message")
        assert "nothing was charged" in browser.driver.find_element(By.ID, "canceled").text
        browser.wait_balance(8)

        # Pay, with Stripe's event arriving after the buyer is back.
        status, _, _ = http_json(ctx.emulator + "/test/faults", "POST", {"webhookDelayMilliseconds": 2500})
        assert status == 200, status
        browser.el("plan-starter").click()
        amount = browser.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-test="emulator-amount"]')), "the checkout page").text
        assert amount == "$4.00", amount
        browser.el("emulator-pay").click()
        browser.wait(lambda d: "/payment-success?session_id=cs_" in d.current_url, "the return to /payment-success")
        browser.wait(lambda d: "waiting for Stripe" in d.find_element(By.ID, "success-status").text, "the waiting message")
        browser.driver.execute_script("window.__sameDocument = 'yes'")
        browser.wait_balance(18, timeout=20)
        browser.wait(lambda d: "10 tokens arrived" in d.find_element(By.ID, "success-status").text, "the arrival message")
        assert browser.driver.execute_script("return window.__sameDocument") == "yes", "the page was reloaded"
        browser.shot("payment-success")
        http_json(ctx.emulator + "/test/faults", "POST", {})

        # The discount is gone; the statistics show the purchase.
        browser.driver.find_element(By.CSS_SELECTOR, 'a[href="/pricing"][data-view-link]').click()
        browser.wait(lambda d: d.find_element(By.ID, "stat-purchased").text == "10", "the purchase statistics")
        assert not browser.driver.find_element(By.ID, "discount-note").is_displayed()
        assert browser.driver.find_element(By.ID, "stat-transferred").text == "2"

        # Signing out and in again: no second welcome, the same balance.
        browser.el("sign-out").click()
        browser.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-test="sign-in"]')), "signed out")
        dev_sign_in(browser, "user_browser_buyer")
        browser.wait_notice("Signed in as user_browser_buyer")
        browser.wait_balance(18)
    finally:
        browser.close()


def scenario_own_key(ctx):
    browser = Browser("own-key", screenshots=ctx.screenshots)
    try:
        browser.open(ctx.dev)
        browser.wait_balance(3)
        browser.el("own-key").click()
        browser.wait(EC.visibility_of_element_located((By.ID, "own-key-value")), "the key field")
        browser.driver.find_element(By.ID, "own-key-value").send_keys(OWN_KEY)
        # Record what the streaming view shows while the ticket is being written.
        browser.driver.execute_script(
            "window.__streamed = []; const pre = document.getElementById('ticket-stream');"
            " new MutationObserver(() => { if (!pre.hidden && pre.textContent) window.__streamed.push(pre.textContent.length); })"
            ".observe(pre, {childList: true, characterData: true, subtree: true});")
        browser.generate("Add CSV export to the orders page")
        browser.wait(EC.visibility_of_element_located((By.ID, "ticket-title")), "the ticket")
        assert browser.driver.find_element(By.ID, "ticket-title").text == standins.TICKET["title"]
        assert "OpenAI (your key)" in browser.el("provider").text, browser.el("provider").text
        streamed = browser.driver.execute_script("return window.__streamed")
        assert len(streamed) >= 3 and streamed == sorted(streamed), f"the ticket did not appear as it streamed: {streamed}"
        browser.wait_balance(3)
        seen = ctx.openai.RequestHandlerClass.requests
        assert seen and seen[-1]["authorization"] == "Bearer " + OWN_KEY and seen[-1]["stream"], seen
        browser.shot("own-key")
    finally:
        browser.close()
    for name in ("dev.sqlite", "dev.sqlite-wal", "dev.jsonl"):
        path = os.path.join(ctx.work, name)
        if os.path.exists(path):
            with open(path, "rb") as file:
                assert OWN_KEY.encode() not in file.read(), f"the caller's key reached {name}"


def scenario_clerk(ctx):
    browser = Browser("clerk", screenshots=ctx.screenshots)
    try:
        browser.open(ctx.clerk)
        browser.wait_balance(3)
        assert not browser.driver.find_element(By.ID, "dev-banner").is_displayed()
        browser.el("sign-in").click()
        field = browser.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-test="clerk-stand-in-user"]')), "the Clerk sign-in")
        field.send_keys("user_clerk_journey")
        field.send_keys(Keys.ENTER)
        notice = browser.wait_notice("Welcome!")
        assert "6 welcome tokens" in notice and "3 free tokens" in notice, notice
        browser.wait_balance(9)
        assert "user_clerk_journey" in ctx.clerk_stand_in.RequestHandlerClass.issued
    finally:
        browser.close()
    # The Clerk server takes no development tokens, and its page admits the SDK's origin only.
    status, body, _ = http_json(ctx.clerk + "/api/account", headers={"Authorization": "Bearer dev:user_clerk_journey"})
    assert status == 401, (status, body)
    with urllib.request.urlopen(ctx.clerk + "/") as response:
        policy = response.headers["Content-Security-Policy"]
    assert f"script-src 'self' http://127.0.0.1:{ctx.clerk_stand_in.server_port}" in policy, policy


def scenario_phone(ctx):
    browser = Browser("phone", width=390, height=844, screenshots=ctx.screenshots)
    try:
        for path in ("/", "/pricing"):
            browser.open(ctx.dev + path)
            width = browser.driver.execute_script("return window.innerWidth")
            assert width <= 400, width
            overflow = browser.driver.execute_script(
                "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1"
                " && getComputedStyle(e).position !== 'fixed' && e.offsetParent !== null).map(e => e.id || e.className || e.tagName)")
            assert not overflow, f"{path}: wider than the screen: {overflow}"
            assert browser.driver.execute_script("return document.documentElement.scrollWidth") <= width
        browser.open(ctx.dev)
        for test in ("ticket-input", "generate", "balance", "sign-in"):
            assert browser.el(test).is_displayed(), test
        browser.generate("Show order totals on the phone")
        browser.wait(EC.visibility_of_element_located((By.ID, "ticket-title")), "the ticket")
        browser.shot("phone")
    finally:
        browser.close()


def scenario_keyboard(ctx):
    browser = Browser("keyboard")
    try:
        browser.open(ctx.dev)
        unlabelled = browser.driver.execute_script(
            "return [...document.querySelectorAll('input, textarea, select, button')].filter(e => e.type !== 'hidden'"
            " && !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()).map(e => e.id || e.name)")
        assert not unlabelled, f"controls without a label: {unlabelled}"
        # Skip link first, then the controls; the dialog opens focused and Escape closes it.
        body = browser.driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        assert browser.driver.switch_to.active_element.get_attribute("class") == "skip-link"
        browser.el("sign-in").send_keys(Keys.ENTER)
        browser.wait(lambda d: d.switch_to.active_element.get_attribute("id") == "dev-user-id", "focus in the sign-in dialog")
        browser.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
        browser.wait(lambda d: not d.find_element(By.ID, "dev-sign-in").is_displayed(), "the dialog to close")
        # A ticket by keyboard alone.
        box = browser.el("ticket-input")
        box.send_keys("Log every failed sign-in")
        browser.el("generate").send_keys(Keys.ENTER)
        browser.wait_balance(2)
    finally:
        browser.close()


SCENARIOS = [
    ("anonymous journey to zero tokens", scenario_anonymous),
    ("sign-in with transfer, cancel, purchase", scenario_transfer_purchase_cancel),
    ("own OpenAI key", scenario_own_key),
    ("Clerk sign-in (stand-in SDK, RS256)", scenario_clerk),
    ("phone width", scenario_phone),
    ("keyboard and labels", scenario_keyboard),
]


class Context:
    pass


# The main states, in docs/screenshots and shown by the README.
SCREENSHOTS = ["ticket", "out-of-tokens", "pricing", "payment-success", "own-key", "phone"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="directory holding the built myba-server and stripe-emulator")
    parser.add_argument("--screenshots", help="directory to write screenshots of the main states into")
    parser.add_argument("--only", help="run only scenarios whose name contains this")
    args = parser.parse_args()
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.access(tool, os.X_OK):
            print(f"browser journey: {tool} is missing (apt install chromium chromium-driver)")
            return 2
    work = tempfile.mkdtemp(prefix="myba-browser-")
    stack = Stack(args.bin, work)
    ctx = Context()
    ctx.work = work
    ctx.screenshots = args.screenshots
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)
    passed = failed = 0
    try:
        ctx.openai = standins.start_openai_stand_in()
        ctx.clerk_stand_in = standins.start_clerk_stand_in()
        stand_in = f"http://127.0.0.1:{ctx.clerk_stand_in.server_port}"
        stripe_port, dev_port, clerk_port = free_port(), free_port(), free_port()
        ctx.emulator = f"http://127.0.0.1:{stripe_port}"
        ctx.dev = f"http://127.0.0.1:{dev_port}"
        ctx.clerk = f"http://127.0.0.1:{clerk_port}"
        stack.start("stripe-emulator", ["--port", str(stripe_port), "--webhook", f"{ctx.dev}/api/webhook/stripe",
                                        "--webhook", f"{ctx.clerk}/api/webhook/stripe", "--webhook-secret", WEBHOOK_SECRET], {}, "emulator.log")
        dev_env = server_env(dev_port, work, "dev", stripe_port)
        dev_env["OPENAI_API_BASE"] = f"http://127.0.0.1:{ctx.openai.server_port}/v1"
        stack.start("myba-server", [], dev_env, "dev.out")
        clerk_env = server_env(clerk_port, work, "clerk", stripe_port)
        clerk_env.update({
            "CLERK_JWKS_URL": f"{stand_in}/.well-known/jwks.json",
            "CLERK_PUBLISHABLE_KEY": "pk_test_" + base64.b64encode(b"127.0.0.1$").decode().rstrip("="),
            "MYBA_CLERK_JS_URL": f"{stand_in}/clerk.browser.js",
        })
        stack.start("myba-server", [], clerk_env, "clerk.out")
        for url in (ctx.dev + "/api/health", ctx.clerk + "/api/health"):
            wait_http(url)
        for name, scenario in SCENARIOS:
            if args.only and args.only not in name:
                continue
            started = time.time()
            try:
                scenario(ctx)
                passed += 1
                print(f"PASS {name} ({time.time() - started:.1f} s)", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {name} ({time.time() - started:.1f} s)", flush=True)
                traceback.print_exc()
        if args.screenshots and not args.only:
            missing = [name for name in SCREENSHOTS if not os.path.exists(os.path.join(args.screenshots, name + ".png"))]
            if missing:
                failed += 1
                print(f"FAIL screenshots: none of {missing}", flush=True)
    finally:
        stack.stop()
        if failed:
            for log in ("dev.out", "clerk.out", "emulator.log"):
                path = os.path.join(work, log)
                if os.path.exists(path):
                    with open(path, errors="replace") as file:
                        print(f"--- {log} (last 30 lines)")
                        print("".join(file.readlines()[-30:]))
        shutil.rmtree(work, ignore_errors=True)
    print(f"browser journey: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
