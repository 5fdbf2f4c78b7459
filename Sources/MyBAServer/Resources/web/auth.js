// Signing in: Clerk's browser SDK when the server has a publishable key, else the loud
// development sign-in (`Bearer dev:<userId>`), which the server accepts only without Clerk keys.

const DEV_USER_KEY = "myba.devUser";

/** Loads Clerk's browser SDK from `scriptURL` as Clerk documents for a page without a build step. */
function loadClerkScript(scriptURL, publishableKey) {
  return new Promise((resolve, reject) => {
    if (window.Clerk) return resolve(window.Clerk);
    const script = document.createElement("script");
    script.src = scriptURL;
    script.async = true;
    script.crossOrigin = "anonymous";
    script.dataset.clerkPublishableKey = publishableKey;
    script.addEventListener("load", () => (window.Clerk ? resolve(window.Clerk) : reject(new Error("Clerk's SDK loaded but did not start"))));
    script.addEventListener("error", () => reject(new Error("Clerk's SDK could not be loaded from " + new URL(scriptURL).origin)));
    document.head.appendChild(script);
  });
}

/**
 * The page's sign-in, whichever kind: `user()` (null or `{id, label}`), `token()` (a promise of
 * the bearer), `signIn()`, `signOut()`, and `onChange(callback)` for sign-ins and sign-outs.
 */
export async function startAuth(config, { askForDevUser }) {
  const listeners = [];
  const changed = () => listeners.forEach((listener) => listener());

  if (config.authMode === "clerk") {
    const clerk = await loadClerkScript(config.clerkScriptURL, config.clerkPublishableKey);
    await clerk.load();
    let lastUser = clerk.user ? clerk.user.id : null;
    clerk.addListener(({ user }) => {
      const now = user ? user.id : null;
      if (now !== lastUser) {
        lastUser = now;
        changed();
      }
    });
    return {
      mode: "clerk",
      user: () => (clerk.user ? { id: clerk.user.id, label: clerk.user.primaryEmailAddress?.emailAddress || clerk.user.username || clerk.user.id } : null),
      token: async () => (clerk.session ? clerk.session.getToken() : null),
      signIn: () => clerk.openSignIn({}),
      signOut: () => clerk.signOut(),
      onChange: (listener) => listeners.push(listener),
    };
  }

  // Development: the user id is the whole credential, kept in this browser.
  let devUser = localStorage.getItem(DEV_USER_KEY);
  return {
    mode: "development",
    user: () => (devUser ? { id: devUser, label: devUser + " (development)" } : null),
    token: async () => (devUser ? "dev:" + devUser : null),
    signIn: async () => {
      const chosen = await askForDevUser();
      if (!chosen) return;
      devUser = chosen;
      localStorage.setItem(DEV_USER_KEY, devUser);
      changed();
    },
    signOut: async () => {
      devUser = null;
      localStorage.removeItem(DEV_USER_KEY);
      changed();
    },
    onChange: (listener) => listeners.push(listener),
  };
}
