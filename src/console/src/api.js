// Every HTTP call of the console goes through call(method, pathTemplate, {path, query, body}): each call
// site names an operation of contracts/openapi.yaml literally (tests/unit/console checks them). All URLs
// are relative to the page's own origin: the api role serves the console, the management API and (role
// all, or one Ingress host) the inference API.

const TOKEN_KEY = "aiaas.session.token";
const USER_KEY = "aiaas.session.user";

let unauthorized = () => {};

/** Called with a message when a session call answers 401 (the session ended or was never valid). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** The session: a bearer token kept in sessionStorage (this tab only, gone when it closes; never a cookie). */
export const session = {
  token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  user() {
    const raw = sessionStorage.getItem(USER_KEY);
    return raw ? JSON.parse(raw) : null;
  },
  save(token, user) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  saveUser(user) {
    sessionStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
  },
};

/** A failed call: the HTTP status and the problem document's (or OpenAI error object's) message. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

/** "/v1/orgs/{org_id}/keys" + {org_id: "x"} -> "/v1/orgs/x/keys" (each value URL-encoded). */
export function expand(template, path = {}) {
  return template.replace(/\{([a-z_]+)\}/g, (_, name) => {
    const value = path[name];
    if (value === undefined || value === null || value === "") {
      throw new Error(`missing path parameter ${name} for ${template}`);
    }
    return encodeURIComponent(String(value));
  });
}

/** Query string of an object: arrays repeat the name, null/undefined/"" are left out. */
export function queryString(query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== undefined && v !== null && v !== "") params.append(name, String(v));
    }
  }
  const s = params.toString();
  return s ? `?${s}` : "";
}

/** Random hex of `bytes` bytes (getRandomValues works on plain-HTTP origins, randomUUID does not). */
export function randomId(bytes = 16) {
  const a = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The message of an error body: a problem document's detail, or OpenAI's error.message. */
export function errorMessage(status, body) {
  if (body && typeof body === "object") {
    if (body.error && typeof body.error === "object" && body.error.message) return body.error.message;
    if (body.detail) return body.detail;
    if (body.title) return body.title;
  }
  return `The request failed (HTTP ${status}).`;
}

async function readError(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  return new ApiError(res.status, errorMessage(res.status, body), body);
}

/**
 * Calls one operation. Options: path (template values), query, body (sent as JSON), headers,
 * apiKey (authenticate with this API key instead of the session: the inference API takes keys only),
 * anonymous (no credentials at all), raw (return the Response, for streams and downloads), signal.
 * Resolves with the parsed JSON (null for 204); rejects with an ApiError.
 */
export async function call(method, template, options = {}) {
  const { path, query, body, headers = {}, apiKey, anonymous = false, raw = false, signal } = options;
  const url = expand(template, path) + queryString(query);
  const h = { accept: "application/json", ...headers };
  const bearer = anonymous ? null : (apiKey ?? session.token());
  if (bearer) h.authorization = `Bearer ${bearer}`;
  let payload;
  if (body !== undefined) {
    h["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, { method, headers: h, body: payload, signal, credentials: "omit", cache: "no-store" });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "The server could not be reached. Check your connection and try again.", null);
  }
  if (!res.ok) {
    const err = await readError(res);
    // Only the session's own 401 ends it; an API key refused by the inference API is the caller's to show.
    if (res.status === 401 && !anonymous && apiKey === undefined) {
      unauthorized("Your session has ended. Sign in again.");
    }
    throw err;
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** Saves a Blob as a file (the CSV export: fetched with the bearer header, never a token in a URL). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
