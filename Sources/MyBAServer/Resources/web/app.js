// MyBA's page: write a ticket, sign in, buy tokens. One document for /, /pricing and
// /payment-success; the views switch without a reload.

import { api, ApiError, followBalance, generateTicket, newIdempotencyKey } from "./api.js";
import { startAuth } from "./auth.js";
import { copyText, renderTicket } from "./ticket.js";

const SESSION_KEY = "myba.anonymousSession";
const OWN_KEY_KEY = "myba.ownKey";
const TRANSFERRED_KEY = "myba.transferredTo";
const NOTICE_SECONDS = { success: 6, info: 6, error: 10 };

const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  auth: null,
  anonymous: null, // {sessionId, tokensRemaining}
  account: null, // the signed-in account as /api/account answers
  plans: null,
  balanceStream: null,
  lastAnswer: null,
  purchase: null, // /payment-success: the purchase's state
};

// MARK: notices

/** Shows a notice that dismisses itself; errors carry the request id support needs. */
function notify(kind, text, requestId) {
  const notice = document.createElement("div");
  notice.className = "notice " + kind;
  notice.dataset.test = "notice";
  notice.dataset.kind = kind;
  notice.setAttribute("role", kind === "error" ? "alert" : "status");
  const message = document.createElement("p");
  message.textContent = text;
  notice.appendChild(message);
  if (requestId) {
    const reference = document.createElement("p");
    reference.className = "request-id";
    reference.textContent = "Request ID: " + requestId;
    notice.appendChild(reference);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "dismiss";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => notice.remove());
  notice.appendChild(close);
  $("notices").appendChild(notice);
  setTimeout(() => notice.remove(), (NOTICE_SECONDS[kind] || 6) * 1000);
  return notice;
}

function notifyError(error, what) {
  if (error instanceof ApiError) notify("error", (what ? what + ": " : "") + error.message, error.requestId);
  else notify("error", (what ? what + ": " : "") + (error && error.message ? error.message : String(error)));
}

// MARK: views

function currentView() {
  if (location.pathname === "/pricing") return "pricing";
  if (location.pathname === "/payment-success") return "success";
  return "home";
}

function showView() {
  const view = currentView();
  for (const name of ["home", "pricing", "success"]) $("view-" + name).hidden = name !== view;
  for (const link of document.querySelectorAll("[data-view-link]")) {
    if (link.dataset.viewLink === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = { home: "MyBA: AI work tickets", pricing: "Tokens & plans · MyBA", success: "Purchase · MyBA" }[view];
  if (view === "pricing") {
    $("canceled").hidden = new URLSearchParams(location.search).get("canceled") !== "1";
    renderPlans();
  }
  if (view === "success") startSuccessView();
}

function navigate(path) {
  history.pushState({}, "", path);
  showView();
  $("main").focus();
}

// MARK: balance

function renderBalance() {
  const signedIn = state.auth && state.auth.user();
  let tokens = null;
  if (signedIn && state.account) tokens = state.account.tokens;
  else if (!signedIn && state.anonymous) tokens = state.anonymous.tokensRemaining;
  $("balance").textContent = tokens === null ? "…" : String(tokens);
  $("balance-unit").textContent = tokens === 1 ? "token" : "tokens";
  const out = tokens === 0 && currentProvider() === "myba";
  $("out-of-tokens").hidden = !out;
  if (out) {
    $("out-of-tokens-text").textContent = signedIn
      ? "Your tokens are used up. Buy a plan to write more tickets, or use your own OpenAI or Anthropic key."
      : "Your free tokens are used up. Sign in to get welcome tokens (your unused free tokens move with you), or use your own key.";
  }
  const account = signedIn ? state.account : null;
  $("purchase-stats").hidden = !account;
  if (account) {
    $("stat-tokens").textContent = account.tokens;
    $("stat-purchased").textContent = account.tokensPurchased;
    $("stat-used").textContent = account.tokensUsed;
    $("stat-transferred").textContent = account.tokensTransferred;
    $("stat-last-purchase").textContent = account.lastPurchase || "never";
  }
  renderPlans();
  if (currentView() === "success") updateSuccess();
}

function accountArrived(account) {
  state.account = account;
  renderBalance();
}

function startBalanceStream() {
  stopBalanceStream();
  state.balanceStream = followBalance({
    token: () => state.auth.token(),
    onBalance: accountArrived,
    onTrouble: (error) => {
      if (error instanceof ApiError && error.status !== 0) notifyError(error, "Live balance");
    },
  });
}

function stopBalanceStream() {
  if (state.balanceStream) state.balanceStream.stop();
  state.balanceStream = null;
}

// MARK: anonymous session

/** A fingerprint of this browser, so that clearing storage does not mean new free tokens. */
async function fingerprint() {
  const canvas = document.createElement("canvas");
  let drawn = "";
  try {
    const context = canvas.getContext("2d");
    context.textBaseline = "top";
    context.font = "14px sans-serif";
    context.fillText("MyBA fingerprint ✓", 2, 2);
    drawn = canvas.toDataURL();
  } catch {
    // No canvas: the rest still separates browsers.
  }
  const parts = [
    navigator.userAgent,
    navigator.language,
    (navigator.languages || []).join(","),
    `${screen.width}x${screen.height}x${screen.colorDepth}`,
    Intl.DateTimeFormat().resolvedOptions().timeZone,
    navigator.hardwareConcurrency || "",
    navigator.platform || "",
    drawn,
  ].join("|");
  if (crypto.subtle) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts));
    return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
  }
  let hash = 0x811c9dc5;
  for (const char of parts) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193) >>> 0;
  return "fnv-" + hash.toString(16) + "-" + parts.length;
}

async function startAnonymousSession() {
  try {
    const started = await api("/api/anonymous-session", { method: "POST", body: { fingerprint: await fingerprint() } });
    state.anonymous = { sessionId: started.sessionId, tokensRemaining: started.tokensRemaining };
    localStorage.setItem(SESSION_KEY, started.sessionId);
  } catch (error) {
    const stored = localStorage.getItem(SESSION_KEY);
    if (stored) state.anonymous = { sessionId: stored, tokensRemaining: null };
    notifyError(error, "Free tokens");
  }
  renderBalance();
}

// MARK: signing in

function askForDevUser() {
  const dialog = $("dev-sign-in");
  const input = $("dev-user-id");
  return new Promise((resolve) => {
    const finish = (value) => {
      form.removeEventListener("submit", submit);
      $("dev-sign-in-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const form = $("dev-sign-in-form");
    const submit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!/^[A-Za-z0-9_-]{1,100}$/.test(value)) {
        input.setCustomValidity("Letters, digits, _ and - only");
        input.reportValidity();
        return;
      }
      input.setCustomValidity("");
      finish(value);
    };
    const cancel = (event) => {
      if (event) event.preventDefault();
      finish(null);
    };
    form.addEventListener("submit", submit);
    $("dev-sign-in-cancel").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancel);
    dialog.showModal();
    input.focus();
  });
}

/** After a sign-in: open the account (the welcome grant), move the anonymous remainder over. */
async function signedIn() {
  const user = state.auth.user();
  $("user-label").textContent = user.label;
  let account;
  try {
    account = await api("/api/account", { token: () => state.auth.token() });
  } catch (error) {
    notifyError(error, "Signing in");
    return;
  }
  state.account = account;
  let transferred = 0;
  const sessionId = state.anonymous && state.anonymous.sessionId;
  const movedTo = JSON.parse(localStorage.getItem(TRANSFERRED_KEY) || "{}");
  if (sessionId && movedTo[sessionId] !== user.id && state.anonymous.tokensRemaining !== 0) {
    try {
      const moved = await api("/api/transfer-anonymous-tokens", { method: "POST", body: { sessionId }, token: () => state.auth.token() });
      transferred = moved.transferred;
      movedTo[sessionId] = user.id;
      localStorage.setItem(TRANSFERRED_KEY, JSON.stringify(movedTo));
      state.account = { ...state.account, tokens: moved.tokens, tokensTransferred: state.account.tokensTransferred + moved.transferred };
    } catch (error) {
      // The session went to another account, or this account has had its share: say so.
      notifyError(error, "Moving your free tokens");
    }
  }
  const welcome = account.welcomeGranted || 0;
  if (welcome || transferred) {
    const parts = [];
    if (welcome) parts.push(`${welcome} welcome token${welcome === 1 ? "" : "s"}`);
    if (transferred) parts.push(`${transferred} free token${transferred === 1 ? "" : "s"} from before you signed in`);
    notify("success", "Welcome! " + parts.join(" and ") + " arrived.");
  } else {
    notify("info", "Signed in as " + user.label + ".");
  }
  renderBalance();
  startBalanceStream();
}

function renderAuth() {
  const user = state.auth && state.auth.user();
  $("sign-in").hidden = !!user;
  $("sign-out").hidden = !user;
  $("user-label").hidden = !user;
  if (user) $("user-label").textContent = user.label;
  $("sign-in-to-buy").hidden = !!user || !state.config.paymentsEnabled;
}

async function authChanged() {
  renderAuth();
  if (state.auth.user()) {
    await signedIn();
  } else {
    stopBalanceStream();
    state.account = null;
    await startAnonymousSession();
  }
  renderPlans();
}

// MARK: generating

function currentProvider() {
  const checked = document.querySelector('input[name="provider"]:checked');
  return checked && checked.value === "own" ? "own" : "myba";
}

function ownKeyChanged() {
  const own = currentProvider() === "own";
  $("own-key-fields").hidden = !own;
  renderBalance();
}

async function generate(event) {
  event.preventDefault();
  const input = $("ticket-input").value.trim();
  if (!input) {
    notify("error", "Describe the work first: the request is empty.");
    $("ticket-input").focus();
    return;
  }
  const request = { input };
  const own = currentProvider() === "own";
  if (own) {
    const key = $("own-key-value").value.trim();
    if (!key) {
      notify("error", "Enter your API key, or choose MyBA's AI.");
      $("own-key-value").focus();
      return;
    }
    request.provider = $("own-key-provider").value;
    request.apiKey = key;
    localStorage.setItem(OWN_KEY_KEY, JSON.stringify({ provider: request.provider, key }));
  }
  const user = state.auth.user();
  if (!user && state.anonymous) request.sessionId = state.anonymous.sessionId;

  const button = $("generate");
  button.disabled = true;
  $("generate-status").textContent = "Writing the ticket…";
  const card = $("ticket");
  const stream = $("ticket-stream");
  card.hidden = false;
  card.setAttribute("aria-busy", "true");
  $("ticket-body").hidden = true;
  stream.hidden = false;
  stream.textContent = "";
  try {
    const answer = await generateTicket(request, {
      token: user ? () => state.auth.token() : null,
      onDelta: (text) => {
        stream.textContent += text;
      },
    });
    state.lastAnswer = answer;
    renderTicket(answer, {
      title: $("ticket-title"),
      priority: $("ticket-priority"),
      points: $("ticket-points"),
      provider: $("ticket-provider"),
      description: $("ticket-description"),
      criteria: $("ticket-criteria"),
      labels: $("ticket-labels"),
    });
    stream.hidden = true;
    $("ticket-body").hidden = false;
    if (!own) {
      if (user && state.account) state.account = { ...state.account, tokens: answer.tokensRemaining };
      else if (state.anonymous) state.anonymous.tokensRemaining = answer.tokensRemaining;
    }
    renderBalance();
    $("generate-status").textContent = "Ticket ready.";
  } catch (error) {
    card.hidden = !state.lastAnswer;
    stream.hidden = true;
    $("ticket-body").hidden = !state.lastAnswer;
    $("generate-status").textContent = "";
    if (error instanceof ApiError && error.code === "insufficient_tokens") {
      if (user && state.account) state.account = { ...state.account, tokens: 0 };
      else if (state.anonymous) state.anonymous.tokensRemaining = 0;
      renderBalance();
    }
    notifyError(error, "No ticket");
  } finally {
    button.disabled = false;
    card.removeAttribute("aria-busy");
  }
}

// MARK: plans and checkout

function money(amount, currency) {
  return new Intl.NumberFormat(undefined, { style: "currency", currency: currency.toUpperCase() }).format(amount / 100);
}

async function loadPlans() {
  try {
    state.plans = await api("/api/plans");
  } catch (error) {
    notifyError(error, "Plans");
  }
  renderPlans();
}

function renderPlans() {
  const container = $("plans");
  if (!state.plans || !container) return;
  $("payments-off").hidden = state.config.paymentsEnabled;
  const user = state.auth && state.auth.user();
  const discount = user && state.account ? state.account.firstPurchaseDiscountPercent : state.plans.firstPurchaseDiscountPercent;
  const note = $("discount-note");
  note.hidden = !discount;
  if (discount) note.textContent = user ? `Your first purchase is ${discount} % off.` : `${discount} % off your first purchase.`;
  const cards = state.plans.plans.map((plan) => {
    const card = document.createElement("article");
    card.className = "card plan";
    const title = document.createElement("h2");
    title.textContent = plan.name;
    const tokens = document.createElement("p");
    tokens.className = "plan-tokens";
    tokens.textContent = `${plan.tokens} tokens`;
    const price = document.createElement("p");
    price.className = "plan-price";
    if (discount) {
      const was = document.createElement("s");
      was.textContent = money(plan.amount, plan.currency);
      was.setAttribute("aria-label", "was " + money(plan.amount, plan.currency));
      const now = document.createElement("strong");
      now.textContent = money(Math.floor((plan.amount * (100 - discount)) / 100), plan.currency);
      price.append(was, " ", now);
    } else {
      const now = document.createElement("strong");
      now.textContent = money(plan.amount, plan.currency);
      price.append(now);
    }
    const per = document.createElement("p");
    per.className = "hint";
    per.textContent = money(Math.round(plan.amount / plan.tokens), plan.currency) + " per ticket";
    const buy = document.createElement("button");
    buy.type = "button";
    buy.dataset.test = "plan-" + plan.id;
    buy.textContent = user ? `Buy ${plan.name}` : `Sign in to buy ${plan.name}`;
    buy.disabled = !state.config.paymentsEnabled;
    buy.addEventListener("click", () => buyPlan(plan, buy));
    card.append(title, tokens, price, per, buy);
    return card;
  });
  container.replaceChildren(...cards);
}

async function buyPlan(plan, button) {
  if (!state.auth.user()) {
    await state.auth.signIn();
    if (!state.auth.user()) return;
  }
  button.disabled = true;
  button.textContent = "Opening checkout…";
  try {
    const session = await api("/api/create-checkout-session", {
      method: "POST",
      body: { planId: plan.id },
      token: () => state.auth.token(),
      headers: { "Idempotency-Key": newIdempotencyKey() },
    });
    // Only ever leave for a web address: nothing the server relays may run script here.
    if (!/^https?:\/\//.test(session.url)) throw new Error("the checkout address is not a web address");
    location.assign(session.url);
  } catch (error) {
    notifyError(error, "Checkout");
    button.disabled = false;
    button.textContent = `Buy ${plan.name}`;
  }
}

// MARK: after checkout

/** /payment-success?session_id=…: shows the purchase arriving, asked again on each balance push. */
function startSuccessView() {
  state.purchase = null;
  updateSuccess();
}

async function updateSuccess() {
  const status = $("success-status");
  const sessionId = new URLSearchParams(location.search).get("session_id");
  if (!sessionId) {
    status.textContent = "No purchase to show here.";
    return;
  }
  if (!state.auth || !state.auth.user()) {
    status.textContent = "Sign in to see your tokens arrive.";
    return;
  }
  if (state.purchase && state.purchase.status === "granted") return;
  try {
    state.purchase = await api("/api/account/purchases/" + encodeURIComponent(sessionId), { token: () => state.auth.token() });
  } catch (error) {
    notifyError(error, "Purchase");
    return;
  }
  if (state.purchase.status === "granted") {
    const tokens = state.account ? ` You have ${state.account.tokens} tokens.` : "";
    status.textContent = `Payment received: ${state.purchase.tokens} tokens arrived.${tokens}`;
    status.classList.add("success");
    notify("success", `${state.purchase.tokens} tokens arrived.`);
  } else {
    status.textContent = "Payment made; waiting for Stripe to confirm it. Your tokens appear here the moment it does.";
  }
}

// MARK: start

async function main() {
  try {
    state.config = await api("/api/config");
  } catch (error) {
    notifyError(error, "MyBA could not start");
    return;
  }
  $("free-tokens").textContent = state.config.anonymousTokens;
  $("version").textContent = state.config.version;
  $("dev-banner").hidden = state.config.authMode !== "development";

  for (const link of document.querySelectorAll("a[data-nav]")) {
    link.addEventListener("click", (event) => {
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      navigate(new URL(link.href).pathname);
    });
  }
  window.addEventListener("popstate", showView);
  $("generate-form").addEventListener("submit", generate);
  for (const radio of document.querySelectorAll('input[name="provider"]')) radio.addEventListener("change", ownKeyChanged);
  const savedKey = JSON.parse(localStorage.getItem(OWN_KEY_KEY) || "null");
  if (savedKey) {
    $("own-key-provider").value = savedKey.provider;
    $("own-key-value").value = savedKey.key;
  }
  $("own-key-forget").addEventListener("click", () => {
    localStorage.removeItem(OWN_KEY_KEY);
    $("own-key-value").value = "";
    notify("info", "Your API key was removed from this browser.");
  });
  $("copy-markdown").addEventListener("click", async () => {
    if (!state.lastAnswer) return;
    if (await copyText(state.lastAnswer.markdown)) notify("success", "Copied the ticket as Markdown.");
    else notify("error", "The browser refused to copy; select the ticket and copy it by hand.");
  });

  try {
    state.auth = await startAuth(state.config, { askForDevUser });
  } catch (error) {
    notifyError(error, "Sign-in is unavailable");
    state.auth = { mode: "none", user: () => null, token: async () => null, signIn: async () => {}, signOut: async () => {}, onChange: () => {} };
  }
  $("sign-in").addEventListener("click", () => state.auth.signIn());
  $("sign-out").addEventListener("click", async () => {
    await state.auth.signOut();
    notify("info", "Signed out.");
  });
  state.auth.onChange(authChanged);

  renderAuth();
  showView();
  await Promise.all([loadPlans(), state.auth.user() ? signedIn() : startAnonymousSession()]);
  document.body.dataset.ready = "true";
}

main();
