// The public HTTP API, called with the key the user signed in with. The key lives in this
// tab's sessionStorage only: never in a URL, a cookie or a log line of the page.

const KEY = 'memory-service.key';
let onUnauthorized = () => {};

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set(key) {
    sessionStorage.setItem(KEY, key);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
  onUnauthorized(fn) {
    onUnauthorized = fn;
  },
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.error || body.message)) || `The service answered ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

export function url(path, query) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
  }
  return u;
}

// A percent-encoded path segment for a KV key or block id: '/' and '.' too, so that no key is
// ever read as a path (`..`) by the browser or the router.
export function segment(text) {
  return encodeURIComponent(text).replace(/\./g, '%2E');
}

export async function raw(path, { method = 'GET', query, headers, body, key } = {}) {
  const credential = key || session.key;
  const response = await fetch(url(path, query), {
    method,
    body,
    headers: { Authorization: `Bearer ${credential}`, ...(headers || {}) },
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  if (response.status === 401 && !key) onUnauthorized();
  return response;
}

export async function api(path, options = {}) {
  const response = await raw(path, options);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok || !data || data.success === false) {
    throw new ApiError(response.status, data);
  }
  return data;
}

export function json(method, path, value, options = {}) {
  return api(path, {
    ...options,
    method,
    headers: { 'Content-Type': 'application/json', ...(options.headers || {}) },
    body: JSON.stringify(value),
  });
}
