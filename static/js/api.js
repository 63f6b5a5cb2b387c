// How the pages talk to the server: JSON calls to /api/, websocket addresses, the
// closing codes of docs/protocol.md and the reconnect backoff.

// Websocket closing codes: after NOT_FOUND or GONE a client does not reconnect.
export const CLOSE = Object.freeze({ NORMAL: 1000, NOT_FOUND: 4404, GONE: 4410 });

// An answer other than 2xx: `status` is the HTTP status, `code` the error code of the
// JSON body ({"error": {"code", "message"}}), `retryAfter` the Retry-After seconds.
export class ApiError extends Error {
  constructor(message, { status, code, retryAfter }) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Resolves to the JSON answer (null for 204); rejects with an ApiError.
export async function call(method, path, body, headers = {}) {
  const response = await fetch(path, {
    method,
    headers: { Accept: "application/json", "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(payload.error?.message || `the server answered ${response.status}`, {
      status: response.status,
      code: payload.error?.code,
      retryAfter: Number(response.headers.get("Retry-After")) || undefined,
    });
  }
  return payload;
}

export const createSession = () => call("POST", "/api/sessions/", {});

// The landing page's Start (POST /start/, the form's own route, with its CSRF token): a
// hot session with node1 at a prompt when one is held, else a new empty one.
export const startSession = (csrfToken) =>
  call("POST", "/start/", {}, { "X-CSRFToken": csrfToken });

// The calls on one session and the addresses of its websockets; `server` is the pwd
// server's origin when the page is on another one (the embed), else the page's own.
export function sessionApi(sessionId, server = "") {
  const base = `${server}/api/sessions/${encodeURIComponent(sessionId)}`;
  const root = server ? new URL(server) : location;
  const node = (name) => `${base}/nodes/${encodeURIComponent(name)}/`;
  const ws = `${root.protocol === "https:" ? "wss" : "ws"}://${root.host}/ws/sessions/${encodeURIComponent(sessionId)}`;
  return {
    get: () => call("GET", `${base}/`),
    end: () => call("DELETE", `${base}/`),
    extend: () => call("POST", `${base}/extend/`, {}),
    addNode: (body = {}) => call("POST", `${base}/nodes/`, body),
    removeNode: (name) => call("DELETE", node(name)),
    eventsUrl: `${ws}/events/`,
    terminalUrl: (name) => `${ws}/nodes/${encodeURIComponent(name)}/terminal/`,
  };
}

// Milliseconds before reconnect attempt number `attempt` (from 0): 0.5 s doubling up
// to 10 s, with jitter, so a restarting server is not hammered by every page at once.
export function backoff(attempt) {
  return Math.min(10000, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);
}
