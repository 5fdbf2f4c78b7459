// Talking to myba-server: JSON requests, its error shape, and Server-Sent Events read from a
// fetch body (EventSource cannot send the Authorization header a signed-in stream needs).

/** An API error as the server reports it: `{"error":{"code","message","requestId"}}`. */
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's page): fall back to the status line.
  }
  const error = body && body.error ? body.error : {};
  return new ApiError(
    response.status,
    error.code || "http_" + response.status,
    error.message || `the server answered ${response.status} ${response.statusText}`,
    error.requestId || response.headers.get("X-Request-Id") || null,
  );
}

/** A fresh Idempotency-Key: a retry of the same click may reuse it, a new click never does. */
export function newIdempotencyKey() {
  return crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
}

/**
 * Sends a request and resolves to the response when it succeeded. `token` (a string or a
 * function returning a promise of one) becomes the bearer; `body` is sent as JSON. A network
 * failure or an error answer rejects with an ApiError.
 */
async function send(path, { method = "GET", body, token, headers = {}, signal } = {}) {
  const sent = { Accept: "application/json", ...headers };
  if (body !== undefined) sent["Content-Type"] = "application/json";
  const bearer = typeof token === "function" ? await token() : token;
  if (bearer) sent.Authorization = "Bearer " + bearer;
  let response;
  try {
    response = await fetch(path, { method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", "the server could not be reached; check the connection and retry", null);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

/** A JSON request (see `send`); resolves to the decoded answer. */
export async function api(path, options = {}) {
  return (await send(path, options)).json();
}

/** Splits a text/event-stream body into `{event, data}` records as they arrive. */
export async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // a comment: keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

/**
 * POST /api/generate as a stream: `onDelta(text)` gets the ticket's text as the AI writes it;
 * resolves to the final answer (the `ticket` event). A refusal before the charge (no tokens,
 * bad input) is an ordinary JSON error answer and rejects with an ApiError.
 */
export async function generateTicket(request, { token, onDelta }) {
  const response = await send("/api/generate", {
    method: "POST",
    body: request,
    token,
    headers: { Accept: "text/event-stream", "Idempotency-Key": newIdempotencyKey() },
  });
  if (!(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) return response.json();
  for await (const { event, data } of serverSentEvents(response)) {
    if (event === "delta") onDelta(JSON.parse(data).text || "");
    else if (event === "ticket") return JSON.parse(data);
    else if (event === "error") {
      const error = JSON.parse(data).error || {};
      throw new ApiError(502, error.code || "generation_failed", error.message || "the ticket could not be written", error.requestId || null);
    }
  }
  throw new ApiError(0, "stream_ended", "the connection closed before the ticket arrived; retry", null);
}

/**
 * Follows GET /api/account/events: `onBalance(account)` on connect and on every change. The
 * stream reconnects when the server ends it (a restart, its lifetime) until `stop()` is called.
 */
export function followBalance({ token, onBalance, onTrouble }) {
  const controller = new AbortController();
  let stopped = false;
  (async () => {
    let delay = 1000;
    while (!stopped) {
      try {
        const response = await send("/api/account/events", { token, headers: { Accept: "text/event-stream" }, signal: controller.signal });
        delay = 1000;
        for await (const { event, data } of serverSentEvents(response)) {
          if (event === "balance") onBalance(JSON.parse(data));
        }
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
        if (onTrouble) onTrouble(error);
        if (error instanceof ApiError && (error.status === 401 || error.status === 404)) return;
      }
      if (stopped) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30000);
    }
  })();
  return {
    stop() {
      stopped = true;
      controller.abort();
    },
  };
}
