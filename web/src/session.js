// Who is signed in. Dev mode: the server mints a short-lived token for a user name and roles
// (POST /dev/token, absent in production). Production: a token pasted by the user. Kept in
// localStorage so a second tab of the same browser is the same user.

const KEY = "dihya-demo-session";

// `key`: the admin console keeps its session apart (signing in there never changes who you
// are on the demo), under a key of its own.
export function loadSession(key = KEY) {
  try {
    return JSON.parse(localStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

export function saveSession(session, key = KEY) {
  localStorage.setItem(key, JSON.stringify(session));
}

export function clearSession(key = KEY) {
  localStorage.removeItem(key);
}

/** Ask the dev server for a token; resolves to the session or throws an Error with the reason. */
export async function devSignIn(userId, roles) {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId, name: userId, roles }),
  });
  const body = await response.json().catch(() => null);
  if (!body || !body.ok) {
    throw new Error(body ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status}`);
  }
  return { user_id: userId, roles, token: body.data.token, expires_at: body.data.expires_at,
           dev: true };
}

/** A fresh token for the stored dev session (a pasted token cannot be renewed). */
export async function renew(session) {
  if (!session || !session.dev) return null;
  const fresh = await devSignIn(session.user_id, session.roles);
  saveSession(fresh);
  return fresh.token;
}

/** The claims of a JWT, to show who a pasted token is for (not a verification). */
export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}
