// The HTTP API as the page uses it: the same routes as curl, with the session cookie the
// browser sends by itself and, on a request that changes something, the CSRF token kept here
// in memory (never in localStorage: a script injected elsewhere could read it there).

let csrf = null;

export function setCsrf(token) { csrf = token; }

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.detail ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(method, path, body, contentType) {
  const headers = {};
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = contentType || 'application/json';
    payload = contentType ? body : JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = { detail: text }; }
  if (response.status === 401 && !path.startsWith('/ui/session')) {
    window.dispatchEvent(new CustomEvent('signed-out'));
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const get = (path) => api('GET', path);
export const post = (path, body, type) => api('POST', path, body, type);
export const patch = (path, body) => api('PATCH', path, body);
export const del = (path) => api('DELETE', path);
