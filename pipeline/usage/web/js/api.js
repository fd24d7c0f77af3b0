// The usage API (/api/v1/, docs/usage-queries.md) as seen from the page: GET with the bearer token, JSON
// with exact integers, errors as ApiError carrying the API's own {error, detail}.

const BASE = "/api/v1";

export class ApiError extends Error {
  constructor(status, error, detail) {
    super(detail ? `${error}: ${detail}` : error);
    this.status = status;
    this.error = error;
    this.detail = detail;
  }
}

/** GET a JSON route, e.g. getJson(token, "summary", {scope: "key", id, from, to, tz}, signal). */
export async function getJson(token, route, params, signal) {
  const response = await send(token, route, params, signal);
  return JSON.parse(await response.text(), exactIntegers);
}

/** GET a public JSON route (openapi.json): no token. */
export async function getPublicJson(route) {
  const response = await fetch(`${BASE}/${route}`, { cache: "no-store" });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** GET a file route (export.csv): the body as a Blob and the file name the server suggests. */
export async function getFile(token, route, params, signal) {
  const response = await send(token, route, params, signal);
  return { blob: await response.blob(), filename: attachmentName(response) };
}

async function send(token, route, params, signal) {
  const url = `${BASE}/${route}?${new URLSearchParams(definedOnly(params))}`;
  let response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "API unreachable", "the usage API did not answer; check the connection and retry");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.error ?? response.statusText, body.detail ?? "");
  } catch {
    return new ApiError(response.status, response.statusText || `HTTP ${response.status}`, "");
  }
}

function definedOnly(params) {
  return Object.fromEntries(Object.entries(params).filter(([, value]) => value !== undefined && value !== null));
}

// JSON numbers beyond 2^53 would be rounded by JSON.parse; the reviver's source text keeps them exact.
function exactIntegers(key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && /^-?\d+$/.test(context?.source ?? "")) {
    return BigInt(context.source);
  }
  return value;
}

function attachmentName(response) {
  const header = response.headers.get("Content-Disposition") ?? "";
  return /filename="([^"]+)"/.exec(header)?.[1] ?? "usage.csv";
}
