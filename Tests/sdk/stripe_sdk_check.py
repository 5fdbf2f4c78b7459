"""Drives the Stripe emulator with the official stripe-python SDK, for the calls MyBA makes.

Usage: python stripe_sdk_check.py http://127.0.0.1:PORT
Prints one line per check and a closing "N passed, M failed"; exits 1 on any failure.
"""
import http.server
import json
import sys
import threading
import urllib.request

import stripe

BASE = sys.argv[1].rstrip("/")
stripe.api_base = BASE
stripe.api_key = "sk_test_sdk_check"
stripe.max_network_retries = 0
WEBHOOK_SECRET = "whsec_sdk_check_secret"

results = []


def check(name):
    def wrap(fn):
        try:
            fn()
            results.append((name, None))
            print(f"ok   {name}")
        except Exception as error:  # noqa: BLE001 - report every failure
            results.append((name, error))
            print(f"FAIL {name}: {type(error).__name__}: {error}")
        return fn
    return wrap


def post_test_route(path, body=None):
    request = urllib.request.Request(BASE + path, data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


@check("customers: create, retrieve, modify with metadata unset, delete")
def customers():
    customer = stripe.Customer.create(email="sdk@example.com", metadata={"user_id": "user_sdk", "tokens": "6"})
    assert customer.id.startswith("cus_"), customer.id
    fetched = stripe.Customer.retrieve(customer.id)
    assert fetched.email == "sdk@example.com"
    modified = stripe.Customer.modify(customer.id, metadata={"tokens": "9", "user_id": ""})
    assert modified.metadata.to_dict() == {"tokens": "9"}, modified.metadata
    deleted = stripe.Customer.delete(customer.id)
    assert deleted.deleted is True


@check("customers: list newest first with auto-pagination")
def listing():
    created = [stripe.Customer.create(metadata={"n": str(i)}).id for i in range(5)]
    seen = [c.id for c in stripe.Customer.list(limit=2).auto_paging_iter()]
    assert seen[:5] == list(reversed(created)), (seen, created)


@check("idempotency: replay, and IdempotencyError on other parameters")
def idempotency():
    first = stripe.Customer.create(email="a@example.com", idempotency_key="sdk-key-1")
    again = stripe.Customer.create(email="a@example.com", idempotency_key="sdk-key-1")
    assert first.id == again.id
    try:
        stripe.Customer.create(email="b@example.com", idempotency_key="sdk-key-1")
    except stripe.error.IdempotencyError:
        return
    raise AssertionError("no IdempotencyError")


@check("errors: missing object is InvalidRequestError 404 resource_missing")
def missing():
    try:
        stripe.Customer.retrieve("cus_doesnotexist")
    except stripe.error.InvalidRequestError as error:
        assert error.http_status == 404 and error.code == "resource_missing", (error.http_status, error.code)
        return
    raise AssertionError("no InvalidRequestError")


@check("auth: a publishable key is an AuthenticationError")
def publishable():
    try:
        stripe.Customer.list(api_key="pk_test_123")
    except stripe.error.AuthenticationError:
        return
    raise AssertionError("no AuthenticationError")


received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append((body, self.headers.get("Stripe-Signature")))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@check("checkout, payment, refund, events, and webhooks that stripe.Webhook.construct_event accepts")
def checkout_flow():
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    post_test_route("/test/webhook_endpoints", {"url": f"http://127.0.0.1:{server.server_port}/hook", "secret": WEBHOOK_SECRET})
    customer = stripe.Customer.create(metadata={"user_id": "user_pay"})
    session = stripe.checkout.Session.create(
        mode="payment", customer=customer.id, client_reference_id="user_pay",
        line_items=[{"price_data": {"currency": "usd", "unit_amount": 400, "product_data": {"name": "MyBA Starter"}}, "quantity": 1}],
        success_url="https://app.example/ok?session_id={CHECKOUT_SESSION_ID}", cancel_url="https://app.example/pricing",
        metadata={"user_id": "user_pay", "plan_id": "starter", "tokens": "10"})
    assert session.id.startswith("cs_") and session.url and session.payment_status == "unpaid"
    post_test_route(f"/test/checkout/sessions/{session.id}/complete")
    paid = stripe.checkout.Session.retrieve(session.id)
    assert paid.payment_status == "paid" and paid.payment_intent.startswith("pi_")
    refund = stripe.Refund.create(payment_intent=paid.payment_intent, amount=100, reason="requested_by_customer")
    assert refund.amount == 100 and refund.status == "succeeded"
    try:
        stripe.Refund.create(payment_intent=paid.payment_intent, amount=1000)
        raise AssertionError("refund above the charge was accepted")
    except stripe.error.InvalidRequestError:
        pass
    events = stripe.Event.list(type="charge.refunded", limit=10)
    assert len(events.data) == 1 and events.data[0].data.object.amount_refunded == 100
    assert stripe.Event.retrieve(events.data[0].id).type == "charge.refunded"
    for _ in range(100):
        if len(received) >= 2:
            break
        threading.Event().wait(0.05)
    types = []
    for body, header in received:
        event = stripe.Webhook.construct_event(body, header, WEBHOOK_SECRET)
        types.append(event["type"])
    assert types[:2] == ["checkout.session.completed", "charge.refunded"], types
    server.shutdown()


failed = [name for name, error in results if error]
print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
