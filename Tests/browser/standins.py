"""Local stand-ins for the services a browser journey meets: Clerk's browser SDK and its
JWKS (RS256 session tokens the server verifies for real), and OpenAI's chat completions (plain
and streamed) for the caller's-own-key path. Standard library plus PyJWT/cryptography."""
import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

TICKET = {
    "title": "Export last month's orders as CSV",
    "description": "Store managers reconcile orders with accounting and need them as a CSV file.",
    "acceptanceCriteria": ["An Export button on the orders page downloads a CSV", "The file lists every order of the previous month"],
    "priority": "High",
    "storyPoints": 3,
    "labels": ["orders", "export"],
}

# A stand-in for Clerk's browser SDK: the part of `window.Clerk` the page uses (load, user,
# session.getToken, openSignIn, signOut, addListener). Tokens come from the stand-in's server,
# signed RS256 with the key its JWKS publishes. It refuses to start without the publishable key
# attribute Clerk's own script requires.
CLERK_JS = r"""
(() => {
  const script = document.currentScript;
  if (!script || !(script.dataset.clerkPublishableKey || "").startsWith("pk_")) {
    throw new Error("Clerk stand-in: data-clerk-publishable-key is missing");
  }
  const origin = new URL(script.src).origin;
  const STORAGE = "clerk-stand-in.user";
  const listeners = [];
  let user = null;
  const makeUser = (id) => ({ id, username: id, primaryEmailAddress: { emailAddress: id + "@example.test" } });
  const session = {
    id: "sess_stand_in",
    async getToken() {
      if (!user) return null;
      const response = await fetch(origin + "/token?sub=" + encodeURIComponent(user.id) + "&azp=" + encodeURIComponent(location.origin));
      return (await response.json()).jwt;
    },
  };
  const emit = () => listeners.forEach((listener) => listener({ user, session: user ? session : null }));
  window.Clerk = {
    loaded: false,
    get user() { return user; },
    get session() { return user ? session : null; },
    async load() {
      const stored = localStorage.getItem(STORAGE);
      if (stored) user = makeUser(stored);
      this.loaded = true;
    },
    addListener(listener) {
      listeners.push(listener);
      return () => listeners.splice(listeners.indexOf(listener), 1);
    },
    openSignIn() {
      const overlay = document.createElement("div");
      overlay.dataset.test = "clerk-stand-in";
      overlay.style.cssText = "position:fixed;inset:0;background:rgba(0,0,0,.4);display:flex;align-items:center;justify-content:center;z-index:100";
      const form = document.createElement("form");
      form.style.cssText = "background:#fff;padding:1rem;border-radius:8px";
      const label = document.createElement("label");
      label.textContent = "Clerk stand-in: user id ";
      const input = document.createElement("input");
      input.dataset.test = "clerk-stand-in-user";
      label.appendChild(input);
      const button = document.createElement("button");
      button.type = "submit";
      button.textContent = "Continue";
      form.append(label, button);
      overlay.appendChild(form);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        user = makeUser(input.value.trim());
        localStorage.setItem(STORAGE, user.id);
        overlay.remove();
        emit();
      });
      document.body.appendChild(overlay);
      input.focus();
    },
    async signOut() {
      user = null;
      localStorage.removeItem(STORAGE);
      emit();
    },
  };
})();
"""


def b64url(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(handler_class, **attributes):
    """Starts `handler_class` on a free loopback port in a thread; returns the server."""
    handler = type(handler_class.__name__, (handler_class,), attributes)
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body, content_type="application/json", extra=None):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Access-Control-Allow-Origin", "*")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class ClerkStandIn(_Quiet):
    key = None
    kid = "stand-in-key"
    issued = None

    def do_GET(self):
        url = urlparse(self.path)
        origin = f"http://127.0.0.1:{self.server.server_port}"
        if url.path == "/clerk.browser.js":
            self.send(200, CLERK_JS, "text/javascript; charset=utf-8")
        elif url.path == "/.well-known/jwks.json":
            numbers = self.key.public_key().public_numbers()
            jwk = {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": b64url(numbers.n), "e": b64url(numbers.e)}
            self.send(200, json.dumps({"keys": [jwk]}))
        elif url.path == "/token":
            query = parse_qs(url.query)
            now = int(time.time())
            claims = {
                "sub": query["sub"][0], "iss": origin, "azp": query.get("azp", [origin])[0], "sid": "sess_stand_in",
                "iat": now, "nbf": now - 5, "exp": now + 60, "jti": uuid.uuid4().hex,
            }
            token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
            self.issued.append(claims["sub"])
            self.send(200, json.dumps({"jwt": token}))
        else:
            self.send(404, json.dumps({"error": "not found"}))


def start_clerk_stand_in():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return serve(ClerkStandIn, key=key, issued=[])


class OpenAIStandIn(_Quiet):
    """POST /v1/chat/completions: the ticket as OpenAI's JSON, or streamed in chunks."""
    requests = None

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        self.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"), "stream": bool(body.get("stream"))})
        if self.path != "/v1/chat/completions":
            return self.send(404, json.dumps({"error": {"message": "not found"}}))
        content = json.dumps(TICKET)
        model = body.get("model", "gpt-4o-mini")
        if not body.get("stream"):
            reply = {"id": "chatcmpl-standin", "object": "chat.completion", "model": model,
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
            return self.send(200, json.dumps(reply))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        pieces = [content[i:i + 24] for i in range(0, len(content), 24)]
        for piece in pieces:
            chunk = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "model": model,
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.02)
        done = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()
        self.close_connection = True


def start_openai_stand_in():
    return serve(OpenAIStandIn, requests=[])
